// The usage page: balance, spend per day and per model (SVG drawn here), recent calls, CSV, the
// balance history (every ledger entry) with code redemption, admin.
import { api, usd } from "./api.js";
import { $, el, say, sayNow, svg } from "./dom.js";
import { thumbFor } from "./thumbs.js";

let nextToken = "";
let nextLedgerToken = "";
let session = null;
let refresh = null; // the studio's refreshAccount: the header balance after a redemption
let wired = false;
let drawn = null; // the summary last drawn, to redraw at a new width

export async function showUsage(state, refreshAccount) {
  session = state;
  refresh = refreshAccount;
  if (!wired) wire();
  const status = $("#usage-status");
  say(status, "Loading usage…");
  try {
    const [account, summary, page, ledger, referral] = await Promise.all([
      refreshAccount(), api.summary(state.key, 30), api.usage(state.key), api.ledger(state.key), api.referral(state.key),
    ]);
    if (account) {
      $("#u-balance").textContent = usd(account.balance_micros);
      $("#u-held").textContent = usd(account.held_micros);
    }
    $("#u-spent").textContent = usd(summary.charge_micros);
    $("#u-calls").textContent = String(summary.calls);
    drawn = summary;
    drawCharts();
    $("#calls tbody").replaceChildren();
    addCalls(page);
    $("#ledger tbody").replaceChildren();
    addEntries(ledger);
    $("#referral-code").textContent = referral.referral_code || "—";
    say(status, `Loaded ${page.records.length} recent call${page.records.length === 1 ? "" : "s"}.`);
    await showAdmin(account);
  } catch (err) {
    sayNow(status, err.message);
  }
}

// ---------------------------------------------------------------- charts

function drawCharts() {
  if (!drawn || $("#view-usage").hidden) return;
  drawDays($("#chart-days"), drawn.days);
  drawModels($("#chart-models"), drawn.models);
}

function niceMax(value) {
  if (value <= 0) return 1000; // $0.001: an empty chart still has a scale
  const step = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * step).find((m) => m >= value);
}

function chartTable(caption, rows) {
  return el("details", { class: "chart-table" },
    el("summary", { text: "Show as a table" }),
    el("table", {},
      el("caption", { class: "visually-hidden", text: caption }),
      el("tbody", {}, rows.map(([label, value]) => el("tr", {}, el("th", { scope: "row", text: label }), el("td", { class: "num", text: value }))))));
}

/** The chart's width in its own units: the box it is drawn in, so its 13px text stays 13px. */
function widthOf(host) {
  return Math.round(Math.max(300, Math.min(720, host.clientWidth || 600)));
}

function drawDays(host, days) {
  const width = widthOf(host), height = 220, left = 64, right = 12, top = 12, bottom = 28;
  const max = niceMax(Math.max(...days.map((d) => d.charge_micros)));
  const total = days.reduce((sum, d) => sum + d.charge_micros, 0);
  const peak = days.reduce((best, d) => (d.charge_micros > best.charge_micros ? d : best), days[0]);
  const slot = (width - left - right) / days.length;
  const y = (micros) => top + (height - top - bottom) * (1 - micros / max);
  const label = `Spend per day from ${days[0].date} to ${days.at(-1).date}: ${usd(total)} in all` +
    (peak.charge_micros ? `, most on ${peak.date} (${usd(peak.charge_micros)}).` : ".");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "svg-chart" },
    [0, 0.5, 1].map((f) => [
      svg("line", { x1: left, x2: width - right, y1: y(max * f), y2: y(max * f), class: "grid" }),
      svg("text", { x: left - 6, y: y(max * f) + 4, class: "axis", "text-anchor": "end", text: usd(max * f) }),
    ]),
    days.map((d, i) => {
      const h = Math.max(d.charge_micros ? 2 : 0, y(0) - y(d.charge_micros));
      return svg("rect", { x: left + i * slot + slot * 0.15, y: y(0) - h, width: slot * 0.7, height: h, class: "bar", "data-date": d.date },
        svg("title", { text: `${d.date}: ${usd(d.charge_micros)}, ${d.calls} call${d.calls === 1 ? "" : "s"}` }));
    }),
    days.map((d, i) => (i % (width < 480 ? 10 : 7) === (days.length - 1) % (width < 480 ? 10 : 7)
      ? svg("text", { x: left + i * slot + slot / 2, y: height - 8, class: "axis", "text-anchor": "middle", text: d.date.slice(5) })
      : null)),
  );
  host.replaceChildren(chart, chartTable("Spend per day", days.filter((d) => d.calls).map((d) => [d.date, `${usd(d.charge_micros)} (${d.calls} calls)`])));
}

function drawModels(host, models) {
  if (!models.length) {
    host.replaceChildren(el("p", { class: "muted empty-chart", text: "No calls in the last 30 days." }));
    return;
  }
  const width = widthOf(host), row = 34, labelWidth = Math.min(170, width * 0.35), valueWidth = 80;
  const height = models.length * row + 8;
  const max = Math.max(...models.map((m) => m.charge_micros), 1);
  const barSpace = width - labelWidth - valueWidth;
  const label = `Spend per model: ${models.map((m) => `${m.model} ${usd(m.charge_micros)}`).join("; ")}.`;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "svg-chart" },
    models.map((m, i) => {
      const w = Math.max(m.charge_micros ? 2 : 0, (barSpace * m.charge_micros) / max);
      const yy = 4 + i * row;
      return [
        svg("text", { x: labelWidth - 8, y: yy + row / 2 + 4, class: "axis label", "text-anchor": "end", text: m.model.length > labelWidth / 8 ? `${m.model.slice(0, Math.floor(labelWidth / 8) - 1)}…` : m.model }),
        svg("rect", { x: labelWidth, y: yy + 6, width: w, height: row - 12, class: "bar", "data-model": m.model },
          svg("title", { text: `${m.model}: ${usd(m.charge_micros)}, ${m.calls} calls, ${m.images} images` })),
        svg("text", { x: labelWidth + w + 6, y: yy + row / 2 + 4, class: "axis", text: usd(m.charge_micros) }),
      ];
    }),
  );
  host.replaceChildren(chart, chartTable("Spend per model", models.map((m) => [m.model, `${usd(m.charge_micros)} (${m.calls} calls, ${m.images} images)`])));
}

// ---------------------------------------------------------------- recent calls

function when(iso) {
  const date = new Date(`${iso}Z`);
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function addCalls(page) {
  nextToken = page.next_page_token || "";
  $("#more-calls").hidden = !nextToken;
  const body = $("#calls tbody");
  if (!page.records.length && !body.children.length) {
    body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No calls yet." })));
    return;
  }
  for (const r of page.records) {
    const thumb = thumbFor(r.request_id);
    const q = r.quality || {};
    const identity = Array.isArray(q.identity_distance) && q.identity_distance.length
      ? `${q.identity_distance.map((d) => (d < 0 ? "—" : d.toFixed(2))).join(", ")}${q.same_person === false ? " ✗" : q.same_person ? " ✓" : ""}`
      : "—";
    body.append(el("tr", { "data-request": r.request_id },
      el("td", { "data-label": "Image" }, thumb ? el("img", { class: "thumb", src: thumb.src, alt: thumb.prompt ? `Result of “${thumb.prompt}”` : "Result" }) : el("span", { "aria-label": "no thumbnail", text: "—" })),
      el("td", { "data-label": "When" }, el("time", { datetime: `${r.created_at}Z`, text: when(r.created_at) })),
      el("td", { "data-label": "Model", text: r.model }),
      el("td", { "data-label": "Status" }, el("span", { class: `status-pill ${r.status}`, text: r.status.replaceAll("_", " ") })),
      el("td", { "data-label": "Images", class: "num", text: String(r.output_images) }),
      el("td", { "data-label": "Identity", class: "num", text: identity }),
      el("td", { "data-label": "Time", class: "num", text: `${(r.latency_ms / 1000).toFixed(1)} s` }),
      el("td", { "data-label": "Charge", class: "num charge", text: usd(r.charge_micros) }),
    ));
  }
}

async function moreCalls() {
  try {
    addCalls(await api.usage(session.key, nextToken));
  } catch (err) {
    sayNow($("#usage-status"), err.message);
  }
}

async function exportCsv() {
  const status = $("#usage-status");
  try {
    const response = await api.usageCsv(session.key);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `flashbulb-usage-${new Date().toISOString().slice(0, 10)}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say(status, "Usage exported as CSV.");
  } catch (err) {
    sayNow(status, err.message);
  }
}

// ---------------------------------------------------------------- balance history

const KINDS = {
  grant: "Credits added", redeem: "Code redeemed", charge: "Charge", refund: "Refund",
  commission: "Referral commission", clawback: "Commission taken back",
};

function addEntries(page) {
  nextLedgerToken = page.next_page_token || "";
  $("#more-ledger").hidden = !nextLedgerToken;
  const body = $("#ledger tbody");
  if (!page.entries.length && !body.children.length) {
    body.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No credits yet: redeem a code or ask the operator." })));
    return;
  }
  for (const e of page.entries) {
    const what = KINDS[e.kind] || e.kind;
    const request = e.request_id && !e.request_id.startsWith("code-") ? e.request_id : "";
    body.append(el("tr", { "data-kind": e.kind },
      el("td", { "data-label": "When" }, el("time", { datetime: `${e.created_at}Z`, text: when(e.created_at) })),
      el("td", { "data-label": "What", title: e.note || "", text: e.kind === "charge" ? `${what} (${e.note})` : what }),
      el("td", { "data-label": "Request" }, request ? el("code", { text: request.slice(0, 12), title: request }) : "—"),
      el("td", { "data-label": "Amount", class: `num amount ${e.amount_micros < 0 ? "debit" : "credit"}`, text: `${e.amount_micros > 0 ? "+" : ""}${usd(e.amount_micros)}` }),
      el("td", { "data-label": "Balance after", class: "num after", text: usd(e.balance_after_micros) }),
    ));
  }
}

async function moreEntries() {
  try {
    addEntries(await api.ledger(session.key, nextLedgerToken));
  } catch (err) {
    sayNow($("#redeem-result"), err.message);
  }
}

async function redeem(e) {
  e.preventDefault();
  const out = $("#redeem-result");
  const code = $("#redeem-code").value.trim();
  if (!code) return sayNow(out, "Paste a code first.");
  try {
    const done = await api.redeem(session.key, code);
    $("#redeem-code").value = "";
    sayNow(out, done.redeemed === "referral" ? `You were referred by ${done.referrer}.` : `Added ${usd(done.amount_micros)}. Your balance is ${usd(done.balance_micros)}.`);
    await showUsage(session, refresh);
  } catch (err) {
    sayNow(out, err.message);
  }
}

// ---------------------------------------------------------------- admin

/** The admin section, for an admin key only (others never call /admin: no 403s in the console). */
async function showAdmin(account) {
  if (account && !account.admin) {
    $("#admin").hidden = true;
    return;
  }
  let keys, report;
  try {
    [keys, report] = await Promise.all([api.adminKeys(session.key), api.adminUsage(session.key)]);
  } catch (err) {
    $("#admin").hidden = true;
    if (err.kind !== "forbidden") throw err;
    return;
  }
  $("#admin").hidden = false;
  const spent = {};
  for (const t of report.totals || []) spent[t.account] = (spent[t.account] || 0) + t.charge_micros;
  const seen = new Set();
  $("#keys tbody").replaceChildren(
    ...keys.keys.map((k) => {
      const first = !seen.has(k.account);
      seen.add(k.account);
      return el("tr", { class: k.revoked ? "revoked" : "" },
        el("td", {}, first ? k.account : "", k.admin && first ? el("span", { class: "badge", text: "admin" }) : null),
        el("td", {}, el("code", { text: `${k.key_prefix}…` }), ` ${k.key_name}`, k.revoked ? " (revoked)" : ""),
        el("td", {}, el("time", { datetime: `${k.created_at}Z`, text: when(k.created_at) })),
        el("td", { class: "num", text: first ? usd(k.balance_micros) : "" }),
        el("td", { class: "num", text: first ? usd(k.held_micros) : "" }),
        el("td", { class: "num", text: first ? usd(spent[k.account] || 0) : "" }),
      );
    }),
  );
  $("#account-names").replaceChildren(...[...seen].map((name) => el("option", { value: name })));
}

async function createKey(e) {
  e.preventDefault();
  const out = $("#ck-result");
  const account = $("#ck-account").value.trim();
  if (!account) return sayNow(out, "Name the account.");
  try {
    const made = await api.createKey(session.key, { account, credits_usd: $("#ck-credits").value.trim() || "0", admin: $("#ck-admin").checked });
    const field = el("input", { class: "new-key", readonly: true, value: made.key, "aria-label": `New key for ${account}` });
    out.replaceChildren(`Key for ${made.account} (shown only now): `, field,
      el("button", { type: "button", text: "Copy", onclick: () => navigator.clipboard?.writeText(made.key).then(() => say($("#usage-status"), "Key copied.")) }));
    field.select();
    await showAdmin();
  } catch (err) {
    sayNow(out, err.message);
  }
}

async function addCredits(e) {
  e.preventDefault();
  const out = $("#ac-result");
  const account = $("#ac-account").value.trim();
  if (!account) return sayNow(out, "Name the account.");
  try {
    const done = await api.addCredits(session.key, { account, usd: $("#ac-usd").value.trim() || "0", note: "studio" });
    sayNow(out, `${done.account} now has ${usd(done.balance_micros)}.`);
    await showAdmin();
  } catch (err) {
    sayNow(out, err.message);
  }
}

function wire() {
  wired = true;
  $("#more-calls").addEventListener("click", moreCalls);
  $("#more-ledger").addEventListener("click", moreEntries);
  $("#redeem").addEventListener("submit", redeem);
  $("#export-csv").addEventListener("click", exportCsv);
  $("#create-key").addEventListener("submit", createKey);
  $("#add-credits").addEventListener("submit", addCredits);
  let pending = 0;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(drawCharts, 150);
  });
}
