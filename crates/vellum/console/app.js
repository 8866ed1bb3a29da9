// The Vellum operator console: one page that routes itself and drives the management API with
// the session cookie the sign-in set (HttpOnly: this script never sees it). Requests that change
// something carry the sign-in's CSRF token, held in memory only. Live views follow the event
// streams. Every value from the API reaches the page as text, never as markup.

const BASE = document.querySelector('meta[name="vellum-base"]').content;
const CONSOLE = `${BASE}/console`;
const api = (path) => `${BASE}/api/v1${path}`;

let csrf = null;
let signOutTimer = null;
/// Cleanups of the current view (streams, timers), run when the view changes.
let cleanups = [];
/// Tx codes of offers created in this tab: shown once, never stored.
const txCodes = new Map();

class Problem extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// ---- elements -------------------------------------------------------------------------------

/// An element with attributes (on* names are listeners) and children (strings become text).
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const main = () => document.getElementById('main');
const announce = (text) => { document.getElementById('status').textContent = text; };
const when = (millis) => (millis ? new Date(millis).toLocaleString() : '—');
const badge = (text) => h('span', { class: `badge ${text}` }, text);
const link = (path, text, attributes = {}) => h('a', { href: `${CONSOLE}${path}`, ...attributes }, text);

function view(title, ...children) {
  document.title = `${title} · Vellum console`;
  const root = main();
  root.replaceChildren(h('h1', {}, title), ...children.filter(Boolean));
  root.focus({ preventScroll: true });
}

function errorBox(error) {
  const text = error instanceof Problem && error.code ? `${error.code}: ${error.message}` : error.message;
  return h('p', { class: 'error', role: 'alert' }, text);
}

function table(headings, rows, caption) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', {}, h('tr', {}, headings.map((heading) => h('th', { scope: 'col' }, heading)))),
      h('tbody', {}, rows)));
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/x-pem-file' }));
  const anchor = h('a', { href: url, download: name });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- the API --------------------------------------------------------------------------------

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf ?? '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(api(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401) {
    signedOut('Your sign-in has ended. Sign in again.');
    throw new Problem(401, 'unauthorized', 'signed out');
  }
  if (!response.ok) throw new Problem(response.status, data?.code, data?.detail ?? text);
  return data;
}

/// Follows an event stream; `onEvent` gets each envelope with its sequence.
function follow(path, onEvent) {
  const source = new EventSource(api(path), { withCredentials: true });
  const handler = (message) => {
    try { onEvent(JSON.parse(message.data), Number(message.lastEventId)); } catch { /* a keep-alive */ }
  };
  // Events arrive named by their type; listen to every type the log knows.
  for (const type of EVENT_TYPES) source.addEventListener(type, handler);
  source.onmessage = handler;
  cleanups.push(() => source.close());
  return source;
}

const EVENT_TYPES = [
  'credential_offer_created', 'credential_status_changed', 'wallet_initiated_session_created',
  'resolved_credential_offer', 'pushed_authorization_request_succeeded',
  'pushed_authorization_request_failed', 'authorization_request_succeeded',
  'authorization_request_failed', 'requested_token', 'token_request_failed', 'sdjwt_issue',
  'jwt_issue', 'generated_mdoc', 'credential_request_failed', 'credential_deferred',
  'credential_accepted', 'credential_failure', 'credential_deleted', 'issuance_status_changed',
];

/// Runs `work` at most once per `millis`, the last call winning.
function throttle(work, millis) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; work(); }, millis);
    cleanups.push(() => clearTimeout(timer));
  };
}

function every(millis, work) {
  const timer = setInterval(work, millis);
  cleanups.push(() => clearInterval(timer));
}

// ---- sign-in --------------------------------------------------------------------------------

function signedOut(message) {
  csrf = null;
  clearTimeout(signOutTimer);
  document.querySelector('.bar').hidden = true;
  runCleanups();
  const key = h('input', { id: 'api-key', type: 'password', autocomplete: 'current-password', required: true });
  const problem = h('div', { 'aria-live': 'assertive' });
  const form = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      problem.replaceChildren();
      const response = await fetch(`${CONSOLE}/session`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ apiKey: key.value }),
        credentials: 'same-origin',
      });
      key.value = '';
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        problem.replaceChildren(errorBox(new Problem(response.status, data.code,
          response.status === 401 ? 'That is not the management API key.' : data.detail)));
        return;
      }
      started(await response.json());
      route();
    },
  },
  h('label', { for: 'api-key' }, 'Management API key',
    h('small', {}, 'Exchanged once for a session cookie; the key is not kept in the browser.')),
  key,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  problem);
  view('Sign in', message ? h('p', { role: 'alert' }, message) : null, h('section', {}, form));
  key.focus();
}

function started(session) {
  csrf = session.csrfToken;
  document.querySelector('.bar').hidden = false;
  clearTimeout(signOutTimer);
  signOutTimer = setTimeout(() => signedOut('Your sign-in has expired. Sign in again.'),
    Math.max(0, session.expiresAt - Date.now()));
}

async function signOut() {
  await fetch(`${CONSOLE}/session`, {
    method: 'DELETE', headers: { 'X-CSRF-Token': csrf ?? '' }, credentials: 'same-origin',
  });
  history.pushState(null, '', `${CONSOLE}/`);
  signedOut('Signed out.');
}

// ---- routing --------------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, overviewPage, 'overview'],
  [/^\/profiles$/, profilesPage, 'profiles'],
  [/^\/profiles\/new$/, () => profilePage(null), 'profiles'],
  [/^\/profiles\/([^/]+)$/, (id) => profilePage(decodeURIComponent(id)), 'profiles'],
  [/^\/offers\/new$/, offerFormPage, 'offers'],
  [/^\/offers\/([^/]+)\/holder$/, holderPage, null],
  [/^\/offers\/([^/]+)$/, offerPage, 'offers'],
  [/^\/sessions$/, sessionsPage, 'sessions'],
  [/^\/sessions\/([^/]+)$/, sessionPage, 'sessions'],
  [/^\/keys$/, keysPage, 'keys'],
];

function runCleanups() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
}

function route() {
  runCleanups();
  const path = location.pathname.slice(CONSOLE.length);
  for (const [pattern, page, nav] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    document.body.classList.toggle('holder-mode', nav === null);
    document.querySelector('.bar').hidden = nav === null;
    for (const anchor of document.querySelectorAll('[data-nav]')) {
      if (anchor.dataset.nav === nav) anchor.setAttribute('aria-current', 'page');
      else anchor.removeAttribute('aria-current');
    }
    page(...match.slice(1)).catch((error) => {
      if (error.status !== 401) main().append(errorBox(error));
    });
    return;
  }
  view('Not found', h('p', {}, 'No such page. '), link('/', 'Overview'));
}

function go(path) {
  history.pushState(null, '', `${CONSOLE}${path}`);
  route();
}

document.addEventListener('click', (event) => {
  const anchor = event.target.closest('a');
  if (!anchor || anchor.target || anchor.hasAttribute('download') || event.ctrlKey || event.metaKey
      || event.shiftKey || anchor.origin !== location.origin
      || !anchor.pathname.startsWith(CONSOLE)) return;
  event.preventDefault();
  history.pushState(null, '', anchor.pathname);
  route();
});
window.addEventListener('popstate', route);

// ---- overview -------------------------------------------------------------------------------

const WINDOWS = [[3600, 'Last hour'], [86400, 'Last 24 hours'], [604800, 'Last 7 days']];

async function overviewPage() {
  let windowSeconds = 3600;
  const body = h('div');
  const choose = h('select', {
    id: 'window',
    onchange: () => { windowSeconds = Number(choose.value); load(); },
  }, WINDOWS.map(([seconds, text]) => h('option', { value: seconds }, text)));
  view('Overview',
    h('div', { class: 'actions' }, h('label', { for: 'window' }, 'Window'), choose,
      h('span', { class: 'live', id: 'live' }, 'Live')),
    body);
  let following = false;
  async function load() {
    const overview = await call('GET', `/overview?windowSeconds=${windowSeconds}`);
    body.replaceChildren(...renderOverview(overview));
    if (!following) {
      following = true;
      follow(`/events?after=${overview.latestSequence}`, throttle(load, 1000));
    }
  }
  await load();
}

function renderOverview(overview) {
  const byStatus = new Map();
  const byFormat = new Map();
  for (const row of overview.sessions) {
    byStatus.set(row.status, (byStatus.get(row.status) ?? 0) + row.count);
    const format = row.format || row.credentialConfigurationId;
    byFormat.set(format, (byFormat.get(format) ?? 0) + row.count);
  }
  const total = overview.sessions.reduce((sum, row) => sum + row.count, 0);
  const figure = (label, value, id) => h('div', { class: 'card', id },
    h('div', { class: 'hint' }, label), h('div', { class: 'figure' }, value));
  const d = overview.deliveries;
  return [
    h('h2', {}, 'Issuance'),
    h('div', { class: 'cards' },
      figure('Sessions', total, 'sessions-total'),
      ['ACTIVE', 'SUCCESSFUL', 'UNSUCCESSFUL', 'EXPIRED'].map((status) =>
        figure(status, byStatus.get(status) ?? 0, `sessions-${status}`))),
    table(['Credential configuration', 'Format', 'Status', 'Sessions'],
      overview.sessions.map((row) => h('tr', {},
        h('td', {}, h('code', {}, row.credentialConfigurationId)), h('td', {}, row.format),
        h('td', {}, badge(row.status)), h('td', {}, row.count))),
      'Sessions by configuration and status'),
    h('p', { class: 'hint' }, `By format: ${[...byFormat].map(([format, count]) => `${format} ${count}`).join(', ') || 'none'}`),
    h('h2', {}, 'Webhook deliveries'),
    h('div', { class: 'cards' },
      ['DELIVERED', 'RETRYING', 'PENDING', 'FAILED', 'GONE'].map((state) =>
        figure(state, d[state] ?? 0, `deliveries-${state}`))),
    h('h3', {}, 'Pending now, by receiver'),
    overview.backlog.length === 0
      ? h('p', { class: 'ok' }, 'Nothing pending.')
      : table(['Receiver', 'Pending', 'Oldest pending'],
        overview.backlog.map((queue) => h('tr', {},
          h('td', {}, h('code', {}, queue.url)), h('td', {}, queue.pending),
          h('td', {}, `${Math.round(queue.oldestAgeSeconds)} s`))),
        'Pending deliveries by receiver'),
  ];
}

// ---- profiles -------------------------------------------------------------------------------

const profileId = (profile) => profile.profileId;
/// Members of a profile response that are not its definition.
const VIEW_MEMBERS = ['profileId', 'version', 'active', 'createdAt', 'updatedAt'];

async function profilesPage() {
  const profiles = await call('GET', '/profiles');
  view('Profiles',
    h('div', { class: 'actions' }, link('/profiles/new', 'New profile', { class: 'button' })),
    table(['Profile', 'Name', 'Configuration', 'Version', 'State', 'Updated'],
      profiles.map((profile) => h('tr', {},
        h('td', {}, link(`/profiles/${encodeURIComponent(profileId(profile))}`, profileId(profile))),
        h('td', {}, profile.name ?? ''),
        h('td', {}, h('code', {}, profile.credentialConfigurationId)),
        h('td', {}, profile.version),
        h('td', {}, profile.active ? badge('ACTIVE') : badge('INACTIVE')),
        h('td', {}, when(profile.updatedAt)))),
      'Profiles'));
}

async function profilePage(id, version) {
  const profile = id
    ? await call('GET', `/profiles/${encodeURIComponent(id)}${version ? `?version=${version}` : ''}`)
    : null;
  const definition = profile
    ? Object.fromEntries(Object.entries(profile).filter(([name]) => !VIEW_MEMBERS.includes(name)))
    : { id: 'new-profile', name: 'New profile', credentialConfigurationId: '', issuerKeyId: '', credentialData: {} };
  const editor = h('textarea', {
    id: 'definition', spellcheck: 'false', 'aria-describedby': 'editor-problem',
    readonly: Boolean(profile && (!profile.active || version)),
  });
  editor.value = JSON.stringify(definition, null, 2);
  const problem = h('div', { id: 'editor-problem', 'aria-live': 'assertive' });
  const save = async () => {
    problem.replaceChildren();
    let body;
    try { body = JSON.parse(editor.value); } catch (error) {
      problem.replaceChildren(errorBox(new Error(`Not JSON: ${error.message}`)));
      return;
    }
    try {
      const saved = profile
        ? await call('PUT', `/profiles/${encodeURIComponent(id)}`, body)
        : await call('POST', '/profiles', body);
      announce(`Saved version ${saved.version}`);
      go(`/profiles/${encodeURIComponent(profileId(saved))}`);
    } catch (error) {
      if (error.status === 401) return;
      problem.replaceChildren(errorBox(error), ...pointAt(editor, error.message));
    }
  };
  const versions = profile && profile.version > 1
    ? h('label', {}, 'Version',
      h('select', {
        id: 'version',
        onchange: (event) => profilePage(id, Number(event.target.value) === profile.latest ? null : event.target.value),
      }, Array.from({ length: (profile.latest ?? profile.version) }, (_, index) => index + 1).reverse()
        .map((number) => h('option', { value: number, selected: number === profile.version }, `v${number}`))))
    : null;
  if (profile && !version) profile.latest = profile.version;
  view(profile ? `Profile ${id}` : 'New profile',
    profile ? h('p', {}, `Version ${profile.version} · `, profile.active ? badge('ACTIVE') : badge('INACTIVE'),
      ` · updated ${when(profile.updatedAt)}`) : null,
    versions,
    h('label', { for: 'definition' }, 'Definition (JSON)',
      h('small', {}, profile ? 'Saving makes a new version; offers keep the version they were made from.'
        : 'The profile id is its "id".')),
    editor,
    problem,
    h('div', { class: 'actions' },
      editor.readOnly ? null : h('button', { type: 'button', onclick: save }, profile ? 'Save new version' : 'Create profile'),
      profile && profile.active ? h('button', {
        type: 'button', class: 'danger',
        onclick: async () => {
          if (!confirm(`Deactivate ${id}? No new offers can be made from it.`)) return;
          await call('DELETE', `/profiles/${encodeURIComponent(id)}`);
          go('/profiles');
        },
      }, 'Deactivate') : null,
      profile && profile.active ? link(`/offers/new?profile=${encodeURIComponent(id)}`, 'Make an offer') : null));
}

/// The member an API error names (`credentialData.address.city: ...`): selects its line in the
/// editor and says where it is.
function pointAt(editor, detail) {
  const path = /^([A-Za-z0-9_$-]+(?:[.[/][A-Za-z0-9_$\]-]+)*)/.exec(detail)?.[1];
  if (!path) return [];
  const names = path.split(/[.[\]/]+/).filter(Boolean);
  const text = editor.value;
  let at = 0;
  for (const name of names) {
    const found = text.indexOf(`"${name}"`, at);
    if (found < 0) break;
    at = found;
  }
  if (at === 0 && !text.startsWith(`"${names[0]}"`)) {
    const first = text.indexOf(`"${names[0]}"`);
    if (first < 0) return [h('p', { class: 'hint', id: 'error-member' }, `The error names ${path}, which the definition does not have yet.`)];
    at = first;
  }
  const line = text.slice(0, at).split('\n').length;
  const end = text.indexOf('\n', at);
  editor.focus();
  editor.setSelectionRange(text.lastIndexOf('\n', at) + 1, end < 0 ? text.length : end);
  return [h('p', { class: 'hint', id: 'error-member' }, `At ${path}, line ${line} (selected).`)];
}

// ---- offers ---------------------------------------------------------------------------------

async function offerFormPage() {
  const profiles = (await call('GET', '/profiles')).filter((profile) => profile.active);
  const wanted = new URLSearchParams(location.search).get('profile');
  const field = (label, control, hint) => {
    const id = `offer-${control.name}`;
    control.id = id;
    if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
    return h('div', { class: 'field' }, h('label', { for: id }, label),
      hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null, control);
  };
  const profile = h('select', { name: 'profile', required: true },
    profiles.map((p) => h('option', { value: profileId(p), selected: profileId(p) === wanted }, `${profileId(p)} (${p.credentialConfigurationId})`)));
  const authMethod = h('select', { name: 'authMethod' },
    h('option', { value: 'PRE_AUTHORIZED' }, 'Pre-authorized code'),
    h('option', { value: 'AUTHORIZED' }, 'Authorization code (holder logs in)'));
  const txCode = h('select', { name: 'txCode' },
    h('option', { value: '' }, 'None'),
    h('option', { value: 'numeric' }, 'Numeric'),
    h('option', { value: 'text' }, 'Text'));
  const txLength = h('input', { name: 'txLength', type: 'number', min: 4, max: 32, value: 6, inputmode: 'numeric' });
  const expires = h('input', { name: 'expiresInSeconds', type: 'number', min: 1, value: 600, inputmode: 'numeric' });
  const webhook = h('input', { name: 'webhookUrl', type: 'url', placeholder: 'https://backend.example/hooks/vellum' });
  const bearer = h('input', { name: 'webhookBearer', type: 'password', autocomplete: 'off' });
  const problem = h('div', { 'aria-live': 'assertive' });
  const form = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      problem.replaceChildren();
      const request = {
        profileId: profile.value,
        authMethod: authMethod.value,
        expiresInSeconds: Number(expires.value),
      };
      if (txCode.value && authMethod.value === 'PRE_AUTHORIZED') {
        request.txCode = { input_mode: txCode.value, length: Number(txLength.value) };
      }
      if (webhook.value) {
        request.runtimeOverrides = {
          notifications: { webhook: { url: webhook.value, ...(bearer.value ? { bearerToken: bearer.value } : {}) } },
        };
      }
      try {
        const offer = await call('POST', '/offers', request);
        if (offer.txCodeValue) txCodes.set(offer.offerId, offer.txCodeValue);
        go(`/offers/${offer.offerId}`);
      } catch (error) {
        if (error.status !== 401) problem.replaceChildren(errorBox(error));
      }
    },
  },
  field('Profile', profile),
  field('Authorization', authMethod),
  field('Transaction code', txCode, 'A code the holder types in the wallet (pre-authorized offers).'),
  field('Code length', txLength),
  field('Expires in (seconds)', expires),
  field('Webhook override (URL)', webhook, 'Events of this offer go here instead of the profile\'s webhook.'),
  field('Webhook bearer token', bearer),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create offer')),
  problem);
  view('New offer', profiles.length ? h('section', {}, form)
    : h('p', {}, 'No active profile. ', link('/profiles/new', 'Create one first.')));
}

async function offerPage(id) {
  let links = null;
  let gone = null;
  try { links = await call('GET', `/offers/${id}`); } catch (error) {
    if (error.status !== 409) throw error;
    gone = error;
  }
  const tx = txCodes.get(id);
  view('Offer',
    gone ? h('p', { class: 'error', role: 'alert' }, gone.message) : h('section', {},
      h('img', { class: 'qr', id: 'offer-qr', src: api(`/offers/${id}/qr`), alt: 'QR code of the credential offer: scan it with a wallet' }),
      h('p', {}, h('a', { id: 'deep-link', href: links.credentialOffer }, 'Open in a wallet on this device')),
      h('details', {}, h('summary', {}, 'Offer URI'), h('pre', { class: 'mono' }, links.credentialOffer)),
      tx ? h('p', {}, 'Transaction code: ', h('strong', { id: 'tx-code', class: 'mono' }, tx),
        h('span', { class: 'hint' }, ' (shown once: tell it to the holder separately)')) : null,
      h('p', {}, `Expires ${when(links.expiresAt)}`),
      h('div', { class: 'actions' },
        h('a', { href: `${CONSOLE}/offers/${id}/holder`, target: '_blank', rel: 'noopener', id: 'holder-link' }, 'Holder screen (opens a new window)'))),
    h('p', {}, link(`/sessions/${id}`, 'Follow the session', { id: 'session-link' })));
}

async function holderPage(id) {
  const root = main();
  const show = async () => {
    try {
      const links = await call('GET', `/offers/${id}`);
      document.title = 'Scan to receive your credential';
      root.replaceChildren(h('div', { class: 'holder' }, h('div', {},
        h('h1', {}, 'Scan with your wallet'),
        h('img', { class: 'qr', src: api(`/offers/${id}/qr`), alt: 'QR code of your credential offer' }),
        h('p', { class: 'hint' }, `Valid until ${when(links.expiresAt)}`))));
    } catch (error) {
      if (error.status === 401) return;
      root.replaceChildren(h('div', { class: 'holder' }, h('div', {},
        h('h1', {}, 'This offer is no longer available'),
        h('p', {}, error.status === 409 ? 'It was used, or it expired.' : error.message))));
    }
  };
  await show();
  follow(`/sessions/${id}/events`, throttle(show, 500));
}

// ---- sessions -------------------------------------------------------------------------------

const sessionId = (session) => session.sessionId;

function sessionRow(session) {
  const id = sessionId(session);
  return h('tr', { id: `session-${id}`, 'data-status': session.status },
    h('td', {}, link(`/sessions/${id}`, id.slice(0, 8), { 'aria-label': `Session ${id}` })),
    h('td', {}, session.profileId),
    h('td', {}, h('code', {}, session.credentialConfigurationId)),
    h('td', { class: 'status' }, badge(session.status)),
    h('td', {}, when(session.createdAt)),
    h('td', {}, when(session.updatedAt)));
}

async function sessionsPage() {
  const { latestSequence } = await call('GET', '/overview?windowSeconds=60');
  const page = await call('GET', '/sessions?limit=50');
  const rows = h('tbody', {}, page.items.map(sessionRow));
  view('Sessions',
    h('p', { class: 'live' }, 'Live: new sessions appear and statuses change as they happen.'),
    h('div', { class: 'table-wrap' }, h('table', { id: 'sessions' },
      h('caption', { class: 'visually-hidden' }, 'Issuance sessions, newest first'),
      h('thead', {}, h('tr', {}, ['Session', 'Profile', 'Configuration', 'Status', 'Created', 'Updated']
        .map((heading) => h('th', { scope: 'col' }, heading)))),
      rows)));
  const due = new Set();
  const refresh = throttle(async () => {
    const ids = [...due];
    due.clear();
    for (const id of ids) {
      const session = await call('GET', `/sessions/${id}`).catch(() => null);
      if (!session) continue;
      const row = sessionRow(session);
      const old = document.getElementById(`session-${id}`);
      if (old) {
        if (old.dataset.status !== session.status) announce(`Session ${id.slice(0, 8)} is ${session.status}`);
        old.replaceWith(row);
      } else {
        rows.prepend(row);
        announce(`New session ${id.slice(0, 8)}`);
      }
    }
  }, 300);
  follow(`/events?after=${latestSequence}`, (event) => {
    if (!event.id) return;
    due.add(event.id);
    refresh();
  });
}

async function sessionPage(id) {
  const details = h('section', { id: 'session-details' });
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const credentials = h('div', { id: 'credentials' });
  view(`Session ${id.slice(0, 8)}`, details,
    h('div', { class: 'actions' },
      h('button', {
        type: 'button', class: 'secondary', id: 'redeliver-failed',
        onclick: async () => {
          const result = await call('POST', `/sessions/${id}/events/redeliver`);
          announce(`${result.redelivered} deliveries scheduled again`);
          load();
        },
      }, 'Redeliver every failed delivery')),
    h('h2', {}, 'Events'), timeline,
    h('h2', {}, 'Credentials'), credentials);
  let last = 0;
  let pending = false;
  async function load() {
    const [session, events, issued] = await Promise.all([
      call('GET', `/sessions/${id}`),
      call('GET', `/sessions/${id}/events?limit=1000`),
      call('GET', `/sessions/${id}/credentials`),
    ]);
    details.replaceChildren(
      h('p', {}, 'Status ', h('span', { id: 'session-status' }, badge(session.status)),
        session.statusReason ? ` (${session.statusReason})` : ''),
      h('dl', {},
        h('dt', {}, 'Session'), h('dd', { class: 'mono' }, sessionId(session)),
        h('dt', {}, 'Profile'), h('dd', {}, link(`/profiles/${encodeURIComponent(session.profileId)}`, `${session.profileId} v${session.profileVersion}`)),
        h('dt', {}, 'Configuration'), h('dd', { class: 'mono' }, session.credentialConfigurationId),
        h('dt', {}, 'Created'), h('dd', {}, when(session.createdAt)),
        h('dt', {}, 'Expires'), h('dd', {}, when(session.expiresAt))),
      ...(session.status === 'ACTIVE' ? [link(`/offers/${id}`, 'Show the offer')] : []));
    timeline.replaceChildren(...events.items.map((event) => eventItem(id, event, load)));
    last = events.items.at(-1)?.sequence ?? last;
    pending = events.items.some((event) => event.deliveries?.some((delivery) => delivery.status === 'PENDING'));
    credentials.replaceChildren(issued.items.length === 0 ? h('p', { class: 'hint' }, 'None issued.')
      : table(['Credential', 'Format', 'Issued', 'Expires', 'Status', ''],
        issued.items.map((credential) => credentialRow(credential, load)), 'Issued credentials'));
  }
  await load();
  const reload = throttle(load, 300);
  follow(`/sessions/${id}/events?after=${last}`, reload);
  // Deliveries change without events (an attempt's outcome): look again while any is pending.
  every(2000, () => { if (pending) reload(); });
}

function eventItem(session, event, reload) {
  return h('li', { 'data-type': event.type, id: `event-${event.eventId}` },
    h('div', {}, h('strong', {}, event.type), ' ', h('span', { class: 'when' }, when(event.timestamp))),
    h('details', {}, h('summary', {}, 'Data'), h('pre', { class: 'mono' }, JSON.stringify(event.data, null, 2))),
    (event.deliveries ?? []).map((delivery) => h('div', { class: 'delivery' },
      h('div', { class: 'actions' }, badge(delivery.status), h('code', {}, delivery.url),
        h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Redeliver ${event.type} to ${delivery.url}`,
          onclick: async () => {
            const result = await call('POST', `/sessions/${session}/events/${event.eventId}/redeliver`);
            announce(`${result.redelivered} delivery scheduled again`);
            reload();
          },
        }, 'Redeliver')),
      delivery.attempts.length === 0 ? h('p', { class: 'hint' }, 'Not tried yet.') : h('ol', {},
        delivery.attempts.map((attempt) => h('li', {},
          `${when(attempt.at)}: `,
          attempt.statusCode ? `HTTP ${attempt.statusCode}` : `error: ${attempt.error}`,
          ` in ${attempt.durationMs} ms`,
          attempt.response ? h('pre', { class: 'mono' }, attempt.response) : null))))));
}

function credentialRow(credential, reload) {
  const change = (status, text, style) => h('button', {
    type: 'button', class: style,
    onclick: async () => {
      const reason = status === 'VALID' ? undefined : prompt(`${text}: reason (optional)`) ?? undefined;
      if (reason === undefined && status !== 'VALID' && !confirm(`${text} this credential?`)) return;
      await call('POST', `/credentials/${credential.id}/status`, { status, ...(reason ? { reason } : {}) });
      reload();
    },
  }, text);
  const actions = credential.statusList ? [
    credential.status !== 'REVOKED' && credential.status !== 'SUSPENDED' ? change('SUSPENDED', 'Suspend', 'secondary') : null,
    credential.status === 'SUSPENDED' ? change('VALID', 'Reinstate', 'secondary') : null,
    credential.status !== 'REVOKED' ? change('REVOKED', 'Revoke', 'danger') : null,
  ] : [h('span', { class: 'hint' }, 'No status list')];
  return h('tr', {},
    h('td', { class: 'mono' }, credential.id.slice(0, 8)), h('td', {}, credential.format),
    h('td', {}, when(credential.issuedAt)), h('td', {}, when(credential.expiresAt)),
    h('td', {}, credential.status ? badge(credential.status) : '—'), h('td', {}, h('div', { class: 'actions' }, actions)));
}

// ---- keys -----------------------------------------------------------------------------------

async function keysPage() {
  const keys = await call('GET', '/keys');
  const id = h('input', { id: 'key-id', name: 'id', placeholder: 'issuer-2027', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*' });
  const keyType = h('select', { id: 'key-type' }, ['P-256', 'P-384', 'Ed25519'].map((type) => h('option', { value: type }, type)));
  const problem = h('div', { 'aria-live': 'assertive' });
  view('Keys',
    table(['Key', 'Type', 'Algorithm', 'Created', 'Certificates'],
      keys.map((key) => h('tr', {},
        h('td', { class: 'mono' }, key.id), h('td', {}, key.keyType), h('td', {}, key.algorithm),
        h('td', {}, when(key.createdAt)),
        h('td', {}, certificateForm(key, keys)))),
      'Keys'),
    h('h2', {}, 'Generate a key'),
    h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        problem.replaceChildren();
        try {
          const key = await call('POST', '/keys', { ...(id.value ? { id: id.value } : {}), keyType: keyType.value });
          announce(`Key ${key.id} generated`);
          keysPage();
        } catch (error) {
          if (error.status !== 401) problem.replaceChildren(errorBox(error));
        }
      },
    },
    h('label', { for: 'key-id' }, 'Key id', h('small', {}, 'Optional; a random UUID when empty.')), id,
    h('label', { for: 'key-type' }, 'Type'), keyType,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Generate')),
    problem));
}

function certificateForm(key, keys) {
  const profile = h('select', { 'aria-label': `Certificate profile for ${key.id}` },
    h('option', { value: 'IACA' }, 'IACA (self-signed root)'),
    h('option', { value: 'MDOC_DOCUMENT_SIGNER' }, 'mdoc document signer'),
    h('option', { value: 'SD_JWT_SIGNER' }, 'SD-JWT signer'));
  const name = h('input', { 'aria-label': `Common name for ${key.id}`, value: `${key.id} development`, required: true });
  const issuer = h('select', { 'aria-label': `CA key for ${key.id}` }, keys.filter((other) => other.id !== key.id)
    .map((other) => h('option', { value: other.id }, other.id)));
  const problem = h('div', { 'aria-live': 'assertive' });
  return h('details', {}, h('summary', {}, 'Make a development certificate'),
    h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        problem.replaceChildren();
        const request = { profile: profile.value, commonName: name.value };
        try {
          if (profile.value !== 'IACA') {
            const ca = await call('POST', `/keys/${encodeURIComponent(issuer.value)}/certificates`,
              { profile: 'IACA', commonName: `${issuer.value} development CA` });
            request.issuerKeyId = issuer.value;
            request.issuerCertificate = ca.certificate;
          }
          const issued = await call('POST', `/keys/${encodeURIComponent(key.id)}/certificates`, request);
          download(`${key.id}.pem`, issued.certificate);
          download(`${key.id}-chain.pem`, issued.x5Chain.join('\n'));
          problem.replaceChildren(h('p', { class: 'ok' }, 'Downloaded the certificate and its chain.'),
            h('details', {}, h('summary', {}, 'x5Chain for a profile'), h('pre', { class: 'mono' }, JSON.stringify(issued.x5Chain, null, 2))));
        } catch (error) {
          if (error.status !== 401) problem.replaceChildren(errorBox(error));
        }
      },
    }, profile, name, h('label', {}, 'CA key (not for an IACA)', issuer),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Make and download')), problem));
}

// ---- start ----------------------------------------------------------------------------------

document.getElementById('sign-out').addEventListener('click', signOut);

(async () => {
  const response = await fetch(`${CONSOLE}/session`, { credentials: 'same-origin' });
  if (response.ok) {
    started(await response.json());
    route();
  } else {
    signedOut();
  }
})();
