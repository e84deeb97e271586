// The console's one door to the server: the management API (/_meridian/v1/) and /v2/,
// with the session's credentials. The management API takes HTTP Basic credentials (README,
// "How clients authenticate"); they are kept in this tab's sessionStorage only, checked at
// login through the token endpoint, and dropped at logout or when the tab closes. Every
// fetch says credentials: "omit": the browser neither sends HTTP credentials of its own nor
// prompts for them on a 401 with a Basic challenge (the Fetch standard prompts only when
// credentials are included).

const KEY = "meridian.session";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function headers(extra) {
  const h = new Headers(extra || {});
  const s = session();
  if (s && s.basic) h.set("Authorization", "Basic " + s.basic);
  return h;
}

async function errorOf(resp) {
  let code = "", message = "";
  try {
    const body = await resp.json();
    const e = body.error || (body.errors && body.errors[0]) || {};
    code = e.code || "";
    message = e.message || "";
  } catch { /* not JSON */ }
  return new ApiError(resp.status, code, message);
}

// fetch with the session's credentials; JSON in and out. opts.etag/opts.wait: long poll.
export async function request(method, path, { body, etag, signal, raw } = {}) {
  const h = headers(body !== undefined ? { "Content-Type": "application/json" } : {});
  if (etag) h.set("If-None-Match", etag);
  const resp = await fetch(path, {
    method, headers: h, signal, cache: "no-store", credentials: "omit",
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (resp.status === 401 && session()) onUnauthorized();
  if (resp.status === 304) return { notModified: true, etag };
  if (!resp.ok) throw await errorOf(resp);
  if (raw) return resp;
  const text = await resp.text();
  return { data: text ? JSON.parse(text) : null, etag: resp.headers.get("ETag"), resp };
}

export const get = (path, opts) => request("GET", path, opts).then((r) => r.data);
export const mgmt = (p) => "/_meridian/v1/" + p;
export const qs = (o) =>
  Object.entries(o).filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");

// Checks a username and password with the token endpoint (the OAuth2 password grant that
// registry clients use; the failed-login limits and the audit log apply to it).
export async function login(username, password) {
  // No service: the endpoint's own registry, whatever its --registry-name (a service
  // naming another registry is refused).
  const form = new URLSearchParams({ grant_type: "password", username, password });
  const resp = await fetch(mgmt("token"), { method: "POST", body: form, cache: "no-store",
                                            credentials: "omit" });
  if (resp.status === 429) {
    throw new ApiError(429, "TOOMANYREQUESTS",
      `Too many failed logins: retry in ${resp.headers.get("Retry-After") || "a few"} s.`);
  }
  if (!resp.ok) throw new ApiError(resp.status, "UNAUTHORIZED", "Wrong username or password.");
  const basic = btoa(unescape(encodeURIComponent(username + ":" + password)));
  return basic;
}

// Who this session is: GET info answers every user with the region, and admins also with
// the version (README, access control). Access control off: no credentials needed.
export async function whoami(basic) {
  const h = new Headers();
  if (basic) h.set("Authorization", "Basic " + basic);
  const resp = await fetch(mgmt("info"), { headers: h, cache: "no-store", credentials: "omit" });
  if (!resp.ok) return null;
  const info = await resp.json();
  return { region: info.region, isAdmin: info.version !== undefined };
}

// All repositories of the catalog, following its Link pages.
export async function catalog() {
  let url = "/v2/_catalog?n=1000";
  const out = [];
  for (let i = 0; url && i < 1000; i++) {
    const r = await request("GET", url);
    out.push(...(r.data.repositories || []));
    const link = r.resp.headers.get("Link");
    const m = link && link.match(/<([^>]+)>;\s*rel="next"/);
    url = m ? m[1] : null;
  }
  return out;
}
