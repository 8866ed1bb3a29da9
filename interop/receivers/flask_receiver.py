from flask import Flask, request, jsonify

app = Flask(__name__)

@app.route('/webhook/issuance', methods=['POST'])
def handle_webhook():
    auth_header = request.headers.get('Authorization')

    # Verify bearer token
    if auth_header != 'Bearer your-secret-token':
        return 'Unauthorized', 401

    event = request.json
    event_type = event.get('type')
    offer_id = event.get('id')

    print(f"Event: {event_type} for offer {offer_id}")

    if event_type in ['sdjwt_issue', 'jwt_issue', 'generated_mdoc']:
        # Credential was issued - update your systems
        pass

    return 'OK', 200

if __name__ == '__main__':
    app.run(port=3000)
