// The public HTTP API, as the studio uses it. The key goes in x-goog-api-key, to this origin only.

const KEY = "flashbulb.key";

export function storedKey() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function storeKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An error with a message meant for a person, and what kind it is ("key", "credits", "cancelled" ...). */
export class ApiError extends Error {
  constructor(message, kind, status) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

/** Turn an error answer (Google's shape: {error: {code, message, status, details}}) into words. */
export function explain(status, body, retryAfter) {
  const error = (body && body.error) || {};
  const reason = ((error.details || []).find((d) => d.reason) || {}).reason || "";
  const said = error.message || "";
  if (reason === "API_KEY_INVALID" || /API key not valid/i.test(said)) {
    return new ApiError("That API key isn't valid. Check it for typos, or ask your operator for a new one.", "key", status);
  }
  if (reason === "API_KEY_MISSING") {
    return new ApiError("Sign in with an API key first.", "key", status);
  }
  if (reason === "INSUFFICIENT_CREDITS") {
    return new ApiError("You're out of credits: this call costs more than your balance. Ask your operator to add credits. Nothing was charged.", "credits", status);
  }
  if (reason === "RATE_LIMIT_EXCEEDED" || status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return new ApiError(`Too many requests right now.${wait}`, "rate", status);
  }
  if (status === 403) {
    return new ApiError(said || "This key may not do that.", "forbidden", status);
  }
  if (status === 503) {
    const wait = retryAfter ? ` in ${retryAfter} s` : " shortly";
    return new ApiError(`The server is busy. Nothing was charged; try again${wait}.`, "busy", status);
  }
  if (status === 499) {
    return new ApiError("Cancelled. Nothing was charged.", "cancelled", status);
  }
  return new ApiError(said || `The server answered ${status}.`, "server", status);
}

async function call(key, path, { method = "GET", body, signal, raw = false, headers: extra = {} } = {}) {
  const headers = { "x-goog-api-key": key, ...extra };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
    });
  } catch (err) {
    if (err.name === "AbortError") throw new ApiError("Cancelled. Nothing was charged.", "cancelled", 0);
    throw new ApiError("Can't reach the flashbulb server. Is it running?", "network", 0);
  }
  if (!response.ok) {
    let parsed = null;
    try { parsed = await response.json(); } catch { /* not JSON */ }
    throw explain(response.status, parsed, response.headers.get("retry-after"));
  }
  if (raw) return response;
  try {
    return await response.json();
  } catch (err) {
    if (err.name === "AbortError") throw new ApiError("Cancelled. Nothing was charged.", "cancelled", 0);
    throw new ApiError("The server's answer was not readable.", "server", response.status);
  }
}

/** generateContent as server-sent events, asking for progress: `onProgress(fraction)` as the model
 * works, then the same answer generateContent gives. Errors are thrown as `call` throws them. */
async function stream(key, path, body, signal, onProgress) {
  const response = await call(key, `${path}?alt=sse`, { method: "POST", body, signal, raw: true, headers: { "x-flashbulb-progress": "1" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let answer = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
        if (!data) continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw explain(chunk.error.code || 500, chunk, null);
        if (chunk.flashbulb && Object.keys(chunk).length === 1 && "progress" in chunk.flashbulb) onProgress(chunk.flashbulb.progress);
        else answer = chunk;
      }
    }
  } catch (err) {
    if (err.name === "AbortError") throw new ApiError("Cancelled. Nothing was charged.", "cancelled", 0);
    if (err instanceof ApiError) throw err;
    throw new ApiError("The server's answer was not readable.", "server", response.status);
  }
  if (!answer) throw new ApiError("The server ended the answer early. Nothing was charged.", "server", response.status);
  return answer;
}

export const api = {
  account: (key) => call(key, "/flashbulb/account"),
  models: async (key) => {
    const models = [];
    let token = "";
    do {
      const page = await call(key, `/v1beta/models?pageSize=100${token ? `&pageToken=${encodeURIComponent(token)}` : ""}`);
      models.push(...(page.models || []));
      token = page.nextPageToken || "";
    } while (token);
    return models;
  },
  generate: (key, model, body, signal, onProgress) =>
    stream(key, `/v1beta/models/${encodeURIComponent(model)}:streamGenerateContent`, body, signal, onProgress),
  usage: (key, pageToken = "", limit = 25) =>
    call(key, `/flashbulb/account/usage?limit=${limit}${pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : ""}`),
  summary: (key, days = 30) => call(key, `/flashbulb/account/usage/summary?days=${days}`),
  usageCsv: (key) => call(key, "/flashbulb/account/usage.csv", { raw: true }),
  ledger: (key, pageToken = "", limit = 25) =>
    call(key, `/flashbulb/account/ledger?limit=${limit}${pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : ""}`),
  redeem: (key, code) => call(key, "/flashbulb/account/redeem", { method: "POST", body: { code } }),
  referral: (key) => call(key, "/flashbulb/account/referral"),
  verify: (key, mimeType, data) => call(key, "/flashbulb/verify", { method: "POST", body: { inlineData: { mimeType, data } } }),
  adminKeys: (key) => call(key, "/admin/keys"),
  adminUsage: (key) => call(key, "/admin/usage?limit=1"),
  createKey: (key, body) => call(key, "/admin/keys", { method: "POST", body }),
  addCredits: (key, body) => call(key, "/admin/credits", { method: "POST", body }),
};

/** Micro-USD (an integer) as exact dollars, at least to the cent: $0.002, $9.998, $5.00. */
/** Exact, and always to at least a tenth of a cent, so amounts side by side read alike ($4.910 beside
 * $4.908, a $0.002 price): images here cost fractions of a cent. */
export function usd(micros) {
  const n = Number(micros || 0);
  const text = (Math.abs(n) / 1e6).toFixed(6).replace(/(\.\d{3}\d*?)0+$/, "$1");
  return `${n < 0 ? "−" : ""}$${text}`;
}
