// The SDK-HMAC-SHA256 request signature, as the official SDK computes it (the service's
// `api/auth.py` says the scheme line by line). The console signs every call with the
// user's own AK/SK, so it can do exactly what a signed client can, and no more.

import { hex, hmacSha256, sha256 } from "./digest.js";

export const ALGORITHM = "SDK-HMAC-SHA256";

/** Percent-encode all but A-Z a-z 0-9 - _ . ~ (as UTF-8), like the SDK. */
export function encode(text) {
  return encodeURIComponent(text).replace(
    /[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

/** The canonical form of a path: each segment encoded, with a final "/". */
export function canonicalUri(path) {
  const uri = decodeURIComponent(path).split("/").map(encode).join("/");
  return uri.endsWith("/") ? uri : uri + "/";
}

/** Sorted, encoded `key=value` pairs joined by `&`: also the query the console sends, so
 * that what the service decodes is exactly what was signed. */
export function canonicalQuery(params) {
  const pairs = Object.entries(params)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => [String(key), String(value)]);
  pairs.sort((a, b) => (a[0] === b[0] ? compare(a[1], b[1]) : compare(a[0], b[0])));
  return pairs.map(([key, value]) => `${encode(key)}=${encode(value)}`).join("&");
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `YYYYMMDDTHHMMSSZ` of `date`, in UTC. */
export function sdkDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/**
 * The headers that sign one request: X-Sdk-Date and Authorization added to `headers`.
 *
 * `headers` are those the request will carry that are signed (names in any case;
 * `host` among them); `body` the exact string sent ("" for none).
 */
export async function signedHeaders({ method, path, query, headers, body, ak, sk, now }) {
  const date = sdkDate(now || new Date());
  const all = { ...headers, "X-Sdk-Date": date };
  const names = Object.keys(all).map((name) => name.toLowerCase()).sort();
  const byName = Object.fromEntries(Object.entries(all).map(([k, v]) => [k.toLowerCase(), v]));
  const headerLines = names.map((name) => `${name}:${String(byName[name]).trim()}\n`).join("");
  const canonical = [
    method.toUpperCase(),
    canonicalUri(path),
    canonicalQuery(query || {}),
    headerLines,
    names.join(";"),
    hex(await sha256(body || "")),
  ].join("\n");
  const toSign = `${ALGORITHM}\n${date}\n${hex(await sha256(canonical))}`;
  const signature = hex(await hmacSha256(sk, toSign));
  const out = { ...all };
  delete out.host;
  delete out.Host;
  out.Authorization =
    `${ALGORITHM} Access=${ak}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return out;
}
