// A holder logging in without a browser: from an authorization URL it follows the redirects
// (across hosts, with a cookie jar of its own), fills in the login form it is shown once, and
// stops at the first redirect to the wallet's redirect_uri, which it returns without fetching.
//
//   node interop/login.mjs <authorization-url> <username> <password> <stop-prefix>
//   import { login } from './login.mjs'   (login(url, {username, password, stopAt}) -> final URL)
//
// Prints one JSON line {"url": "<final url>"} on stdout; exits 1 with a message on stderr when the
// login fails, a page answers an error or anything but a login form, or the redirects go on too long.
// A refusal at the provider is no failure: its final URL carries error=access_denied.

import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const MAX_HOPS = 20
const REQUEST_TIMEOUT_MS = 10_000

/** Cookies per host:port, each with the path it was set for. */
class CookieJar {
  #hosts = new Map()

  store(url, setCookies) {
    const { host } = new URL(url)
    const jar = this.#hosts.get(host) ?? new Map()
    this.#hosts.set(host, jar)
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim())
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq)
      const options = Object.fromEntries(
        attributes.map((attribute) => {
          const [key, ...value] = attribute.split('=')
          return [key.toLowerCase(), value.join('=')]
        }),
      )
      const expired =
        ('max-age' in options && Number(options['max-age']) <= 0) ||
        ('expires' in options && Date.parse(options.expires) <= Date.now())
      const path = options.path?.startsWith('/') ? options.path : '/'
      const key = `${name} ${path}`
      if (expired) jar.delete(key)
      else jar.set(key, { name, value: pair.slice(eq + 1), path })
    }
  }

  header(url) {
    const { host, pathname } = new URL(url)
    const cookies = [...(this.#hosts.get(host)?.values() ?? [])].filter(
      ({ path }) => pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`),
    )
    return cookies.map(({ name, value }) => `${name}=${value}`).join('; ')
  }
}

function attributes(tag) {
  const found = {}
  for (const [, name, doubleQuoted, singleQuoted, bare] of tag.matchAll(/([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))/g)) {
    found[name.toLowerCase()] = doubleQuoted ?? singleQuoted ?? bare
  }
  return found
}

function unescapeHtml(text) {
  return text.replace(/&(#\d+|#x[0-9a-f]+|amp|lt|gt|quot|apos);/gi, (entity, code) => {
    const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[code.toLowerCase()]
    if (named) return named
    return String.fromCodePoint(code[1].toLowerCase() === 'x' ? parseInt(code.slice(2), 16) : Number(code.slice(1)))
  })
}

/** The first form with login and password fields: its action, method and the other fields' values. */
function loginForm(html) {
  for (const [, open, inner] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const inputs = [...inner.matchAll(/<input\b[^>]*>/gi)].map(([tag]) => attributes(tag))
    const names = new Set(inputs.map((input) => input.name))
    if (!names.has('login') || !names.has('password')) continue
    const form = attributes(open)
    const fields = inputs.filter((input) => input.name && input.type?.toLowerCase() === 'hidden')
    return {
      action: unescapeHtml(form.action ?? ''),
      method: (form.method ?? 'get').toUpperCase(),
      hidden: fields.map(({ name, value = '' }) => [unescapeHtml(name), unescapeHtml(value)]),
    }
  }
  return undefined
}

/** The start of a page's text, without markup, for error messages. */
function excerpt(text) {
  const flat = unescapeHtml(
    text
      .replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, ' ')
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  )
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat
}

export async function login(authorizationUrl, { username, password, stopAt }) {
  const jar = new CookieJar()
  let url = new URL(authorizationUrl).href
  let method = 'GET'
  let body
  let submitted = false

  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const cookie = jar.header(url)
    const headers = { Accept: 'text/html', ...(cookie ? { Cookie: cookie } : {}) }
    if (body) headers['Content-Type'] = 'application/x-www-form-urlencoded'
    const response = await fetch(url, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }).catch((error) => {
      throw new Error(`${method} ${url} failed: ${error.cause?.message ?? error.message}`, { cause: error })
    })
    jar.store(url, response.headers.getSetCookie())

    const location = response.headers.get('location')
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel()
      const next = new URL(location, url).href
      if (next.startsWith(stopAt)) return next
      // Only 307 and 308 repeat the request as it was; the others turn it into a GET.
      if (response.status !== 307 && response.status !== 308) {
        method = 'GET'
        body = undefined
      }
      url = next
      continue
    }

    const text = await response.text()
    if (response.status !== 200) {
      throw new Error(`${method} ${url} answered ${response.status}: ${excerpt(text)}`)
    }
    const form = loginForm(text)
    if (!form) throw new Error(`${method} ${url} answered 200 without a login form: ${excerpt(text)}`)
    // A second form means the first answer was not accepted.
    if (submitted) throw new Error(`the provider did not accept the login of ${username}: ${excerpt(text)}`)
    submitted = true

    const fields = new URLSearchParams(form.hidden)
    fields.set('login', username)
    fields.set('password', password)
    const action = new URL(form.action || url, url)
    if (form.method === 'POST') {
      method = 'POST'
      body = fields.toString()
    } else {
      method = 'GET'
      body = undefined
      action.search = fields.toString()
    }
    url = action.href
  }
  throw new Error(`no redirect to ${stopAt} after ${MAX_HOPS} requests (the last to ${url})`)
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [authorizationUrl, username, password, stopAt] = process.argv.slice(2)
  if (!stopAt) {
    process.stderr.write('usage: node login.mjs <authorization-url> <username> <password> <stop-prefix>\n')
    process.exit(1)
  }
  try {
    const url = await login(authorizationUrl, { username, password, stopAt })
    process.stdout.write(`${JSON.stringify({ url })}\n`)
  } catch (error) {
    process.stderr.write(`login: ${error?.stack ?? error}\n`)
    process.exit(1)
  }
}
