const express = require('express');
const app = express();

app.use(express.json());

app.post('/webhook/issuance', (req, res) => {
  const authHeader = req.headers.authorization;

  // Verify bearer token
  if (authHeader !== 'Bearer your-secret-token') {
    return res.status(401).send('Unauthorized');
  }

  const { id, type, timestamp, data } = req.body;

  console.log(`Event: ${type} for offer ${id}`);

  switch (type) {
    case 'resolved_credential_offer':
      console.log('Offer resolved by wallet');
      break;
    case 'requested_token':
      console.log('Token requested');
      break;
    case 'sdjwt_issue':
    case 'jwt_issue':
    case 'generated_mdoc':
      console.log('Credential issued');
      // Update your database, trigger workflows, etc.
      break;
  }

  res.status(200).send('OK');
});

app.listen(3000);
