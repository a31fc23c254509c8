// The service's API, signed in the browser. Credentials live in this tab's session
// storage only: closing the tab (or signing out) forgets them.

import { canonicalQuery, signedHeaders } from "./signer.js";

const STORAGE_KEY = "dcs-migration-console";

/** An answer that is not a success, in the DCS form (`error_code`, `error_msg`). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function savedCredentials() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    return saved && saved.ak && saved.sk && saved.projectId ? saved : null;
  } catch {
    return null;
  }
}

export function saveCredentials(credentials) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(credentials));
}

export function forgetCredentials() {
  sessionStorage.removeItem(STORAGE_KEY);
}

function requestId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Api {
  /**
   * @param {{ak: string, sk: string, projectId: string}} credentials
   * @param {(error: ApiError) => void} [onRefused] told of a call whose signature was
   *   refused (401): the key revoked, or this computer's clock 15 minutes off
   */
  constructor(credentials, onRefused = () => {}) {
    this.credentials = credentials;
    this.onRefused = onRefused;
  }

  get projectId() {
    return this.credentials.projectId;
  }

  /**
   * One signed call to `/v2/{project_id}{path}`: the answer's JSON (null for 204), or an
   * ApiError. Every call carries a signed request id of its own, since the service
   * accepts a signature of a call that changes something once only.
   */
  async call(method, path, { query, body } = {}) {
    const fullPath = `/v2/${encodeURIComponent(this.projectId)}${path}`;
    const text = body === undefined ? "" : JSON.stringify(body);
    const headers = await signedHeaders({
      method,
      path: fullPath,
      query,
      body: text,
      ak: this.credentials.ak,
      sk: this.credentials.sk,
      headers: {
        host: location.host,
        "Content-Type": "application/json;charset=UTF-8",
        "X-Project-Id": this.projectId,
        "X-Client-Request-Id": requestId(),
      },
    });
    const search = canonicalQuery(query || {});
    let answer;
    try {
      answer = await fetch(fullPath + (search ? `?${search}` : ""), {
        method,
        headers,
        body: text || undefined,
        credentials: "omit",
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "NETWORK", `the service cannot be reached (${err.message})`);
    }
    if (answer.status === 204) return null;
    let json = null;
    try {
      json = await answer.json();
    } catch {
      json = null;
    }
    if (!answer.ok) {
      const code = (json && json.error_code) || `HTTP ${answer.status}`;
      const message = (json && json.error_msg) || answer.statusText || "request failed";
      const error = new ApiError(answer.status, code, message);
      if (answer.status === 401) this.onRefused(error);
      throw error;
    }
    return json;
  }

  get(path, query) {
    return this.call("GET", path, { query });
  }

  post(path, body) {
    return this.call("POST", path, { body: body === undefined ? {} : body });
  }

  put(path, body) {
    return this.call("PUT", path, { body });
  }

  delete(path, body) {
    return this.call("DELETE", path, { body });
  }
}
