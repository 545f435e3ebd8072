// Provenance in the studio: what a result carries (content credentials, watermark) and the Verify
// page, which checks any image with POST /flashbulb/verify.
import { api } from "./api.js";
import { $, el, readFile, sayNow } from "./dom.js";

/** The "Content credentials" line of a result's measurements. */
export function provenanceOf(fb) {
  const mark = (fb.quality || {}).watermark;
  const signed = fb.content_credentials
    ? el("span", { class: "good", text: "✓ signed C2PA manifest" })
    : el("span", { class: "muted", text: "no C2PA manifest (off on this server)" });
  let marked;
  if (!mark) marked = el("span", { class: "muted", text: "no watermark (off on this server)" });
  else if (mark.marked) {
    const exact = mark.read_back_bit_errors === 0 ? ", read back exactly" : `, read back with ${mark.read_back_bit_errors} bit errors`;
    marked = el("span", { class: "good", text: `✓ invisible watermark (PSNR ${mark.psnr_db} dB${exact})` });
  } else marked = el("span", { class: "muted", text: `no watermark: ${mark.why}` });
  return [signed, " · ", marked];
}

function describeCredentials(c2pa) {
  if (!c2pa) return [el("span", { class: "muted", text: "none: never signed, or stripped by a re-encode or a screenshot" })];
  if (!c2pa.valid) return [el("span", { class: "bad", text: `✗ invalid: ${(c2pa.failures || [c2pa.error]).join(", ")}` })];
  // Trusted means this server's own trust list (its signing CA) holds the signer.
  const trust = c2pa.trusted ? "✓ valid, signed by a key this server trusts" : "✓ valid (the signer is not in this server's trust list)";
  return [
    el("span", { class: "good", text: trust }),
    el("br"),
    `${c2pa.claim_generator}; signed by ${c2pa.signer.common_name} (${c2pa.signer.issuer})`,
    el("br"),
    c2pa.actions.map((a) => a.action.replace("c2pa.", "") + (a.parameters?.description ? ` (${a.parameters.description})` : "")).join(" → "),
  ];
}

function describeMark(mark) {
  if (!mark.found) return [el("span", { class: "muted", text: `not found${mark.why ? ` (${mark.why})` : ""}` })];
  const who = mark.request_id ? `request ${mark.request_id}, ${new Date(mark.created).toLocaleString()}` : "a call of another account";
  return [
    el("span", { class: "good", text: `✓ made by flashbulb: ${mark.model}` }),
    el("br"),
    `${who} · ${mark.bit_errors} bit errors · confidence ${mark.confidence}`,
  ];
}

/** Check one image and show the answer at the top of the Verify page. */
export async function checkImage(key, name, mime, b64) {
  const status = $("#verify-status");
  sayNow(status, `Checking ${name}…`);
  const card = el("li", { class: "panel verify-card" },
    el("img", { src: `data:${mime};base64,${b64}`, alt: `Checked: ${name}` }),
    el("div", {}, el("h2", { text: name }), el("p", { class: "muted", text: "Checking…" })));
  $("#verify-results").prepend(card);
  try {
    const found = await api.verify(key, mime, b64);
    card.lastChild.replaceChildren(
      el("h2", { text: name }),
      el("dl", { class: "quality" },
        el("dt", { text: "Content credentials" }), el("dd", {}, ...describeCredentials(found.c2pa)),
        el("dt", { text: "Watermark" }), el("dd", {}, ...describeMark(found.watermark))));
    sayNow(status, `${name}: ${found.watermark.found || found.c2pa?.valid ? "made by flashbulb" : "no sign of flashbulb"}.`);
  } catch (err) {
    card.lastChild.replaceChildren(el("h2", { text: name }), el("p", { class: "error", text: err.message }));
    sayNow(status, err.message);
  }
}

export function installVerify(currentKey) {
  $("#verify-files").addEventListener("change", async (e) => {
    for (const file of [...e.target.files]) {
      const url = await readFile(file);
      await checkImage(currentKey(), file.name, file.type || "image/png", url.slice(url.indexOf(",") + 1));
    }
    e.target.value = "";
  });
}
