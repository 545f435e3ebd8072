// flashbulb studio: sign in, browse models, edit/generate with the Gemini API, compare, continue.
import { api, forgetKey, storedKey, storeKey, usd } from "./api.js";
import { $, el, readFile, say, sayNow } from "./dom.js";
import { rememberThumb } from "./thumbs.js";
import { showUsage } from "./usage.js";
import { checkImage, installVerify, provenanceOf } from "./verify.js";

const MAX_REFS = 3;
const VIEWS = ["signin", "studio", "models", "usage", "verify"];

const state = {
  key: "",
  account: null,
  models: [],
  refs: [], // {name, mime, b64, url}
  // What each answered turn showed: {prompt, before, outputs, selected, text, fb, model, requestId,
  // parent (the turn it edited, or null), conversation (the Gemini contents up to its answer)}
  turns: [],
  base: null, // the turn whose result the next turn edits (null: start from the photos chosen)
  shown: -1, // the turn in the result panel
  running: null, // {controller, started, timer}
};

// ---------------------------------------------------------------- views and sign-in

function show(view) {
  if (!state.key) view = "signin";
  if (!VIEWS.includes(view)) view = "studio";
  for (const name of VIEWS) $(`#view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("#nav").hidden = $("#account").hidden = !state.key;
  document.title = `${view === "signin" ? "Sign in" : view[0].toUpperCase() + view.slice(1)} · flashbulb studio`;
  if (view === "usage") showUsage(state, refreshAccount);
  if (view === "signin") $("#api-key").focus();
}

function route() {
  show(location.hash.replace(/^#\/?/, "") || "studio");
}

async function signIn(key, { remember = false, quiet = false } = {}) {
  const error = $("#signin-error");
  sayNow(error, "");
  $("#signin-button").disabled = true;
  try {
    const account = await api.account(key);
    $("#api-key").removeAttribute("aria-invalid");
    state.key = key;
    if (!quiet) storeKey(key, remember);
    setAccount(account);
    await loadModels();
    if (location.hash === "#signin") location.hash = "#studio";
    route();
    if (!quiet) $("#main").focus();
  } catch (err) {
    state.key = "";
    if (quiet && err.kind === "key") forgetKey();
    show("signin");
    sayNow(error, err.message);
    $("#api-key").setAttribute("aria-invalid", String(err.kind === "key"));
  } finally {
    $("#signin-button").disabled = false;
  }
}

function signOut() {
  forgetKey();
  Object.assign(state, { key: "", account: null, models: [], base: null, turns: [], shown: -1 });
  state.running?.controller.abort();
  clearRefs();
  renderResult();
  $("#api-key").value = "";
  location.hash = "#signin";
  show("signin");
}

function setAccount(account) {
  state.account = account;
  $("#account-name").textContent = account.account;
  $("#balance").textContent = usd(account.available_micros);
}

async function refreshAccount() {
  try {
    setAccount(await api.account(state.key));
  } catch (err) {
    if (err.kind === "key") signOut();
  }
  return state.account;
}

// ---------------------------------------------------------------- models

async function loadModels() {
  state.models = await api.models(state.key);
  const select = $("#model");
  const previous = select.value || localStorage.getItem("flashbulb.model") || "";
  select.replaceChildren(
    ...[...state.models]
      .sort((a, b) => Number(b.flashbulb.installed) - Number(a.flashbulb.installed))
      .map((m) =>
        el("option", { value: m.baseModelId, disabled: !m.flashbulb.installed },
          `${m.baseModelId} — ${usd(m.flashbulb.price_micros_per_image)}/image${m.flashbulb.installed ? "" : " (not installed)"}`),
      ),
  );
  const usable = state.models.filter((m) => m.flashbulb.installed).map((m) => m.baseModelId);
  select.value = usable.includes(previous) ? previous : usable[0] || "";
  modelChanged();
  renderCatalog();
}

function currentModel() {
  return state.models.find((m) => m.baseModelId === $("#model").value) || null;
}

function modelChanged() {
  const model = currentModel();
  const hint = $("#model-hint");
  if (!model) {
    hint.textContent = "No model is installed on this server.";
    return;
  }
  localStorage.setItem("flashbulb.model", model.baseModelId);
  const caps = model.flashbulb.capabilities;
  const canDraw = caps.includes("generate");
  hint.textContent = `${caps.join(", ")} · ${usd(model.flashbulb.price_micros_per_image)} per image${canDraw ? "" : " · needs a photo"}`;
  // A model that makes one image a call (flashbulb-photo) gets no choice of how many.
  const count = $("#count");
  count.max = String(Math.min(4, model.flashbulb.max_images_per_call || 4));
  if (Number(count.value) > Number(count.max)) count.value = count.max;
  count.disabled = count.max === "1";
  // What this model does, to click before typing: each fills the prompt.
  $("#examples").replaceChildren(
    ...(model.flashbulb.examples || []).map((text) =>
      el("li", {}, el("button", { type: "button", class: "example", onclick: () => useExample(text), text })),
    ),
  );
  updateRunLabel();
}

/** Text whose `quoted` parts are commands, as code. */
function withCode(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", { text: part }) : part));
}

function useExample(text) {
  const prompt = $("#prompt");
  prompt.value = text;
  prompt.focus();
  updateRunLabel();
}

function renderCatalog() {
  const list = $("#catalog");
  // One card a model, its aliases (gpt-image-1, gemini-2.5-flash-image...) named on it; what this
  // server can run first, the rest of the catalog after, for the operator to install.
  const aliases = (m) => state.models.filter((a) => a.flashbulb.model === m.baseModelId && a !== m).map((a) => a.baseModelId);
  const models = state.models
    .filter((m) => m.flashbulb.model === m.baseModelId)
    .sort((a, b) => Number(b.flashbulb.installed) - Number(a.flashbulb.installed));
  list.replaceChildren(
    ...models.map((m) => {
      const f = m.flashbulb;
      const title = `catalog-${m.baseModelId}`;
      const also = aliases(m);
      return el("li", { class: `model-card${f.installed ? "" : " not-installed"}`, "aria-labelledby": title },
        el("div", { class: "model-head" },
          el("h2", { id: title, text: m.baseModelId }),
          el("span", { class: `badge ${f.installed ? "ok" : "off"}`, text: f.installed ? "installed" : "not installed" }),
        ),
        el("p", { class: "muted", text: m.displayName }),
        el("ul", { class: "chips", "aria-label": "Capabilities" }, f.capabilities.map((c) => el("li", { text: c }))),
        el("dl", { class: "facts" },
          el("dt", { text: "Price" }), el("dd", { text: `${usd(f.price_micros_per_image)} per image` }),
          el("dt", { text: "Licence" }), el("dd", {},
            f.licence || "not stated",
            f.commercial_use === false ? el("strong", { class: "warn", text: " — not for commercial use" }) : null),
          f.max_reference_images ? [el("dt", { text: "References" }), el("dd", { text: `up to ${f.max_reference_images}` })] : null,
          f.steps ? [el("dt", { text: "Steps" }), el("dd", { text: String(f.steps) })] : null,
          also.length ? [el("dt", { text: "Also" }), el("dd", {}, "answers as ", withCode(also.map((a) => `\`${a}\``).join(", ")))] : null,
        ),
        el("details", {}, el("summary", { text: "Description" }), el("p", { text: m.description })),
        f.installed
          ? el("button", { type: "button", class: "primary", onclick: () => useModel(m.baseModelId), text: `Use ${m.baseModelId}` })
          : el("p", { class: "hint" }, f.install ? withCode(f.install) : "Not installed on this server: its operator can install it."),
      );
    }),
  );
}

function useModel(name) {
  $("#model").value = name;
  modelChanged();
  location.hash = "#studio";
  show("studio"); // now, not on hashchange: the prompt must be visible to take focus
  $("#prompt").focus();
}

// ---------------------------------------------------------------- reference photos

let adding = Promise.resolve();

/** Add photos (from the picker, a drop or a paste) one batch at a time, so two quick pastes can't
 * both see room for one more. */
function addFiles(files) {
  files = [...files];
  adding = adding.then(() => addFilesNow(files), () => addFilesNow(files));
  return adding;
}

async function addFilesNow(files) {
  const error = $("#run-error");
  sayNow(error, "");
  const images = [...files].filter((f) => f.type.startsWith("image/"));
  if (images.length < files.length) sayNow(error, "Only image files can be references.");
  const room = MAX_REFS - state.refs.length;
  if (images.length > room) sayNow(error, `Up to ${MAX_REFS} photos: ${images.length - room > 1 ? "the extra ones were" : "one was"} left out.`);
  for (const file of images.slice(0, Math.max(0, room))) {
    const url = await readFile(file);
    state.refs.push({ name: file.name || "pasted image", mime: file.type, b64: url.slice(url.indexOf(",") + 1), url });
  }
  renderRefs();
  say($("#status"), state.refs.length ? `${state.refs.length} photo${state.refs.length > 1 ? "s" : ""} ready.` : "");
}

function clearRefs() {
  state.refs = [];
  renderRefs();
}

function renderRefs() {
  $("#refs").replaceChildren(
    ...state.refs.map((ref, i) =>
      el("li", {},
        el("img", { src: ref.url, alt: `Photo ${i + 1}: ${ref.name}` }),
        el("button", {
          type: "button", class: "remove", "aria-label": `Remove photo ${i + 1} (${ref.name})`, text: "×",
          onclick: () => {
            state.refs.splice(i, 1);
            renderRefs();
            $("#files").focus();
          },
        }),
      ),
    ),
  );
  $("#dropzone").classList.toggle("full", state.refs.length >= MAX_REFS);
  updateRunLabel();
}

/** The conversation the next turn continues: the base turn's, or none. */
function basis() {
  return state.base === null ? [] : state.turns[state.base].conversation;
}

function updateRunLabel() {
  const base = state.base === null ? null : state.turns[state.base];
  $("#run").textContent = state.refs.length > 0 || base ? "Edit" : "Generate";
  const next = `Turn ${state.turns.length + 1}`;
  $("#continuing").hidden = !state.turns.length;
  $("#prompt").placeholder = base ? "What next? e.g. make it black and white" : "restore this old photo";
  $("#continue").textContent = state.base === state.shown ? "Continue editing" : "Edit this result";
  $("#continuing-thumb").hidden = !base;
  if (base) $("#continuing-thumb").src = base.outputs[base.selected].url;
  // Say on screen what the next call starts from: a result, or the photos chosen.
  $("#continuing-text").textContent = !base
    ? `${next} starts afresh from ${state.refs.length ? "the photos above" : "your prompt"}.`
    : state.refs.length
      ? `${next} uses the photos above, after the conversation up to turn ${state.base + 1}.`
      : `${next} edits the result of turn ${state.base + 1}.`;
}

/** The next turn edits the result shown (any turn: a branch from an earlier one). */
function editResult(index) {
  state.base = index;
  updateRunLabel();
  $("#compose").scrollIntoView({ behavior: "smooth", block: "start" });
  $("#prompt").focus();
}

/** The next turn starts again from the photos the shown turn's line began with. */
function startFromOriginal(index) {
  const first = state.turns[index].conversation.find((c) => c.role === "user" && c.parts.some((p) => p.inlineData));
  state.base = null;
  state.refs = (first?.parts || []).filter((p) => p.inlineData).map((p, i) => ({
    name: `original ${i + 1}`, mime: p.inlineData.mimeType, b64: p.inlineData.data,
    url: `data:${p.inlineData.mimeType};base64,${p.inlineData.data}`,
  }));
  renderRefs();
  updateRunLabel();
  $("#prompt").focus();
}

// ---------------------------------------------------------------- running a request

/** The history to send: every turn's text, and only the newest image (the one a follow-up edits),
 * so a long conversation of large images stays well under the request size limit. */
function historyToSend(conversation) {
  let newest = -1;
  conversation.forEach((turn, i) => { if (turn.parts.some((p) => p.inlineData)) newest = i; });
  return conversation.map((turn, i) => {
    if (i === newest) return turn;
    const parts = turn.parts.filter((p) => !p.inlineData);
    return { role: turn.role, parts: parts.length ? parts : [{ text: "(image)" }] };
  });
}

async function run(event) {
  event.preventDefault();
  if (state.running) return;
  const error = $("#run-error");
  sayNow(error, "");
  $("#refusal").replaceChildren();
  const model = currentModel();
  const prompt = $("#prompt").value.trim();
  const count = Math.round(Number($("#count").value));
  if (!model) return sayNow(error, "Choose a model first.");
  if (!prompt && !state.refs.length) return sayNow(error, "Write what you want, and add a photo to edit one.");
  const most = Number($("#count").max);
  if (!(count >= 1 && count <= most)) return sayNow(error, `Images must be a number from 1 to ${most}.`);
  if (!state.refs.length && state.base === null && !model.flashbulb.capabilities.includes("generate")) {
    return sayNow(error, `${model.baseModelId} edits photos and can't draw from text alone: add a photo first.`);
  }

  const userTurn = {
    role: "user",
    parts: [...state.refs.map((r) => ({ inlineData: { mimeType: r.mime, data: r.b64 } })), ...(prompt ? [{ text: prompt }] : [])],
  };
  const generationConfig = { responseModalities: ["TEXT", "IMAGE"], candidateCount: count };
  if ($("#aspect").value) generationConfig.imageConfig = { aspectRatio: $("#aspect").value };
  const body = { contents: [...historyToSend(basis()), userTurn], generationConfig };
  const previous = state.base === null ? null : state.turns[state.base];
  const before = state.refs[0]?.url || (previous ? previous.outputs[previous.selected].url : null);

  startProgress();
  try {
    const answer = await api.generate(state.key, model.baseModelId, body, state.running.controller.signal, showProgress);
    await received(answer, { prompt, before, userTurn, model: model.baseModelId });
  } catch (err) {
    sayNow(error, err.message);
    say($("#status"), err.kind === "cancelled" ? "Cancelled." : "");
    if (err.kind === "key") setTimeout(signOut, 2500);
  } finally {
    stopProgress();
    refreshAccount();
  }
}

function startProgress() {
  const controller = new AbortController();
  const started = performance.now();
  const tick = () => { $("#elapsed").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`; };
  state.running = { controller, started, timer: setInterval(tick, 100) };
  tick();
  const bar = $("#progress-bar");
  bar.classList.remove("determinate");
  bar.removeAttribute("aria-valuenow");
  $("#progress-text").textContent = "Waiting for the model…";
  $("#progress").hidden = false;
  $("#run").disabled = true;
  $("#cancel").hidden = false;
  say($("#status"), "Working… Cancel stops it, and nothing is charged.");
}

// The model's own progress, as the server streams it (the photo engine's stages and tiles, a
// diffusion model's steps); the bar slides without a figure until the first one arrives.
function showProgress(fraction) {
  const bar = $("#progress-bar");
  const percent = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  bar.classList.add("determinate");
  bar.style.setProperty("--done", `${percent}%`);
  bar.setAttribute("aria-valuenow", String(percent));
  $("#progress-text").textContent = percent < 100 ? `${percent}%` : "Checking the result…";
}

function stopProgress() {
  clearInterval(state.running.timer);
  const seconds = ((performance.now() - state.running.started) / 1000).toFixed(1);
  state.running = null;
  $("#progress").hidden = true;
  $("#run").disabled = false;
  if (document.activeElement === $("#cancel")) $("#run").focus();
  $("#cancel").hidden = true;
  return seconds;
}

function decodeImage(part) {
  const bytes = Uint8Array.from(atob(part.inlineData.data), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: part.inlineData.mimeType || "image/png" }));
  return { url, part };
}

async function received(answer, { prompt, before, userTurn, model }) {
  // A blocked input comes back as promptFeedback, with no candidate (as Gemini answers).
  const blocked = answer.promptFeedback?.blockReason;
  const candidate = (answer.candidates || [])[0] || (blocked ? { finishReason: blocked } : {});
  const parts = candidate.content?.parts || [];
  const text = parts.filter((p) => p.text && !p.thought).map((p) => p.text).join("\n")
    || answer.promptFeedback?.blockReasonMessage || "";
  const images = parts.filter((p) => p.inlineData);
  const fb = answer.flashbulb || {};
  const seconds = ((performance.now() - state.running.started) / 1000).toFixed(1);
  if (!images.length) {
    const why = {
      IMAGE_SAFETY: "The safety check blocked this image.",
      IMAGE_OTHER: "The result lost the person's likeness, so it was not returned.",
      NO_IMAGE: "The model made no image.",
    }[candidate.finishReason] || "The model made no image.";
    const charged = /nothing was (done or )?charged|not charged/i.test(text) ? "" : " Nothing was charged.";
    // The model's answer, not a mistake of the user's: what happened in a line, then the model's words,
    // the list of what it understands folded away (the examples show it better).
    const [said, understood] = text.split(/(?<=\S) (?=\S+ understands — )/, 2);
    $("#refusal").replaceChildren(
      el("strong", { text: why }),
      el("p", { text: `${said}${understood ? "" : charged}`.trim() }),
      understood ? el("details", {}, el("summary", { text: "What it understands" }), el("p", { text: `${understood}${charged}` })) : null,
    );
    say($("#status"), `No image (${candidate.finishReason || "no reason given"}).`);
    return;
  }
  const turn = {
    prompt, before, text, fb, model, requestId: fb.request_id || answer.responseId,
    outputs: images.map(decodeImage), selected: 0,
  };
  const modelTurn = { role: "model", parts: [...(text ? [{ text }] : []), images[0]] };
  Object.assign(turn, { modelTurn, parent: state.base, conversation: [...basis(), userTurn, modelTurn] });
  state.turns.push(turn);
  state.base = state.turns.length - 1; // the next turn edits this result unless the user picks another
  clearRefs();
  $("#prompt").value = "";
  state.shown = state.turns.length - 1;
  renderResult();
  renderHistory();
  say($("#status"), `Done in ${seconds} s. Charged ${usd(fb.charge_micros)}.`);
  const panel = $("#result").getBoundingClientRect();
  if (panel.top > window.innerHeight * 0.6) $("#result").scrollIntoView({ block: "start" }); // a phone: it is below the form
  const img = new Image();
  img.onload = () => rememberThumb(turn.requestId, img, prompt);
  img.src = turn.outputs[0].url;
}

// ---------------------------------------------------------------- the result panel

function renderResult() {
  const turn = state.turns[state.shown];
  $("#result-empty").hidden = Boolean(turn);
  $("#result-body").hidden = !turn;
  if (!turn) return;
  $("#result-title").textContent = state.turns.length > 1 ? `Result of turn ${state.shown + 1}` : "Result";
  const out = turn.outputs[turn.selected];
  const after = $("#after-img");
  after.alt = `After: ${turn.prompt || "result"}`;
  after.onload = () => {
    layoutCompare();
    renderQuality(turn, after);
  };
  after.src = out.url;
  const compare = $("#compare");
  compare.classList.toggle("single", !turn.before);
  compare.classList.remove("side-by-side");
  $("#shape-note").hidden = true;
  $("#before-img").onload = layoutCompare;
  $("#before-img").src = turn.before || "";
  $("#before-img").alt = turn.before ? "Before: the photo that was edited" : "";
  $("#compare-range").hidden = !turn.before;
  if (state.splitShown !== state.shown) $("#compare-range").value = "50"; // each turn's comparison starts half and half
  state.splitShown = state.shown;
  setSplit(Number($("#compare-range").value));

  $("#outputs").hidden = turn.outputs.length < 2;
  $("#outputs").replaceChildren(
    ...turn.outputs.map((o, i) =>
      el("li", {},
        el("button", {
          type: "button", class: "output-pick", "aria-pressed": String(i === turn.selected),
          "aria-label": `Show image ${i + 1} of ${turn.outputs.length}`,
          onclick: () => pickOutput(turn, i),
        }, el("img", { src: o.url, alt: "" })),
      ),
    ),
  );
  $("#model-text").textContent = turn.text;
  const download = $("#download");
  download.href = out.url;
  download.download = `flashbulb-${turn.requestId || "result"}${turn.outputs.length > 1 ? `-${turn.selected + 1}` : ""}.png`;
  $("#from-original").hidden = !turn.conversation.some((c) => c.role === "user" && c.parts.some((p) => p.inlineData));
  updateRunLabel();
}

function pickOutput(turn, index) {
  turn.selected = index;
  const keep = turn.modelTurn.parts.filter((p) => !p.inlineData);
  turn.modelTurn.parts = [...keep, turn.outputs[index].part]; // the image a later turn edits
  updateRunLabel();
  renderResult();
  renderHistory();
}

// One frame, the result's shape, when before and after share a shape: the slider wipes between
// them. When an edit changed the shape (a crop, a new aspect ratio) a wipe would letterbox one and
// not the other, so they stand side by side at one height, each whole, and the change is said.
function layoutCompare() {
  const compare = $("#compare");
  const after = $("#after-img");
  const before = $("#before-img");
  if (!after.naturalWidth) return;
  compare.style.aspectRatio = `${after.naturalWidth} / ${after.naturalHeight}`;
  const shown = !compare.classList.contains("single") && before.complete && before.naturalWidth;
  const ratio = (img) => img.naturalWidth / img.naturalHeight;
  const reshaped = Boolean(shown) && Math.abs(ratio(before) / ratio(after) - 1) > 0.01;
  compare.classList.toggle("side-by-side", reshaped);
  $("#compare-range").hidden = compare.classList.contains("single") || reshaped;
  const note = $("#shape-note");
  note.hidden = !reshaped;
  if (reshaped) {
    compare.style.aspectRatio = `${ratio(before) + ratio(after)} / 1`;
    compare.style.gridTemplateColumns = `${ratio(before)}fr ${ratio(after)}fr`;
    note.textContent = `The shape changed (${before.naturalWidth}×${before.naturalHeight} → ` +
      `${after.naturalWidth}×${after.naturalHeight}), so before and after stand side by side, each whole.`;
  }
}

function setSplit(percent) {
  // The before image shows left of the divider: clip its right-hand (100 - percent)%.
  $("#before-wrap").style.clipPath = `inset(0 ${100 - percent}% 0 0)`;
  $("#divider").style.left = `${percent}%`;
  $("#compare-range").setAttribute("aria-valuetext", `${percent}% before, ${100 - percent}% after`);
}

function fmt(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function renderQuality(turn, image) {
  const q = turn.fb.quality || {};
  const rows = [];
  const add = (term, ...value) => rows.push(el("dt", { text: term }), el("dd", {}, ...value));
  add("Charge", el("strong", { text: usd(turn.fb.charge_micros) }));
  if (Array.isArray(q.identity_distance) && q.identity_distance.length) {
    const threshold = q.identity_threshold || 0.6;
    const same = q.same_person ?? q.identity_distance.every((d) => d >= 0 && d < threshold);
    add("Identity",
      el("span", { class: "identity", text: `distance ${q.identity_distance.map((d) => (d < 0 ? "no face" : d.toFixed(3))).join(", ")}` }),
      " — ",
      el("span", { class: same ? "good" : "bad", text: same ? "✓ same person" : "✗ not the same person" }),
      el("span", { class: "muted", text: ` (< ${threshold} is the same person)` }));
  } else if ("faces_in" in q && !q.faces_in) {
    add("Identity", el("span", { class: "muted", text: "no face in the photo to compare" }));
  }
  if ("faces_in" in q || "faces_out" in q) add("Faces", `${q.faces_in ?? "—"} in → ${q.faces_out ?? "—"} out`);
  if (q.safety) {
    const verdicts = [...(q.safety.inputs || []), ...(q.safety.output ? [q.safety.output] : [])];
    const flagged = verdicts.flatMap((v) => v.found || []);
    const safe = verdicts.every((v) => v.safe);
    add("Safety", el("span", { class: safe ? "good" : "bad", text: safe ? "✓ safe (inputs and output)" : `✗ flagged: ${flagged.join(", ")}` }));
  }
  if (q.ocr) {
    const wanted = q.ocr.wanted || [];
    add("Text read back",
      wanted.length
        ? wanted.map((w) => `“${w.text}” ${Math.round(w.accuracy * 100)}%`).join(", ")
        : "no quoted text asked for",
      (q.ocr.read || []).length ? el("span", { class: "muted", text: ` — read: ${q.ocr.read.join(" / ")}` }) : null);
  }
  if (Array.isArray(q.edits) && q.edits.length) {
    add("Edits", q.edits.map((e) => {
      const value = (v) => (typeof v === "boolean" ? (v ? "yes" : "no") : typeof v === "object" ? JSON.stringify(v) : v);
      const extra = Object.entries(e).filter(([k]) => k !== "operation").map(([k, v]) => `${k.replaceAll("_", " ")}: ${value(v)}`);
      return `${e.operation}${extra.length ? ` (${extra.join(", ")})` : ""}`;
    }).join("; "));
  }
  add("Content credentials", ...provenanceOf(turn.fb));
  add("Size", `${image.naturalWidth} × ${image.naturalHeight}`);
  const timings = turn.fb.timings_ms || {};
  const total = timings.model ?? Object.values(timings).reduce((a, b) => a + b, 0);
  add("Time", el("details", {},
    el("summary", { text: `${fmt(total)} in the model` }),
    el("ul", { class: "timings" }, Object.entries(timings).map(([k, v]) => el("li", { text: `${k}: ${fmt(v)}` })))));
  const known = new Set(["identity_distance", "identity_threshold", "same_person", "faces_in", "faces_out", "safety", "ocr", "edits", "timings_ms", "watermark"]);
  const more = Object.fromEntries(Object.entries(q).filter(([k]) => !known.has(k)));
  if (Object.keys(more).length) {
    add("More", el("details", {}, el("summary", { text: "other measurements" }), el("pre", { text: JSON.stringify(more, null, 1) })));
  }
  add("Request", el("code", { text: turn.requestId || "—" }));
  $("#quality").replaceChildren(...rows);
}

function renderHistory() {
  $("#history-section").hidden = state.turns.length < 1;
  const spent = state.turns.reduce((sum, t) => sum + (t.fb.charge_micros || 0), 0);
  $("#history-total").textContent = `${state.turns.length} turn${state.turns.length === 1 ? "" : "s"} · ${usd(spent)}`;
  $("#history").replaceChildren(
    ...state.turns.map((turn, i) =>
      el("li", { class: i === state.shown ? "current" : "" },
        el("button", { type: "button", class: "turn", "aria-current": i === state.shown ? "true" : false, onclick: () => { state.shown = i; renderResult(); renderHistory(); } },
          el("img", { src: turn.outputs[turn.selected].url, alt: "" }),
          el("span", { class: "turn-text" },
            el("strong", { text: `Turn ${i + 1}` }),
            i > 0 && turn.parent !== i - 1 ? el("span", { class: "muted", text: turn.parent === null ? "from the original" : `from turn ${turn.parent + 1}` }) : null,
            el("span", { text: turn.prompt || "(no prompt)" }),
            el("span", { class: "muted", text: `${turn.model} · ${usd(turn.fb.charge_micros)}` })),
        ),
      ),
    ),
  );
}

function newSession() {
  state.base = null;
  state.turns = [];
  state.shown = -1;
  clearRefs();
  renderResult();
  renderHistory();
  updateRunLabel();
  say($("#status"), "Started a new conversation.");
  $("#prompt").focus();
}

// ---------------------------------------------------------------- wiring

function wire() {
  window.addEventListener("hashchange", route);
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) return sayNow($("#signin-error"), "Paste your API key first.");
    signIn(key, { remember: $("#remember").checked });
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#model").addEventListener("change", modelChanged);
  $("#compose").addEventListener("submit", run);
  $("#cancel").addEventListener("click", () => state.running?.controller.abort());
  $("#files").addEventListener("change", async (e) => {
    await addFiles(e.target.files);
    e.target.value = "";
  });
  const zone = $("#dropzone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    addFiles(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    if ($("#view-studio").hidden) return;
    const files = [...(e.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
  $("#compare-range").addEventListener("input", (e) => setSplit(Number(e.target.value)));
  $("#continue").addEventListener("click", () => editResult(state.shown));
  $("#from-original").addEventListener("click", () => startFromOriginal(state.shown));
  $("#new-session").addEventListener("click", newSession);
  installVerify(() => state.key);
  $("#check-provenance").addEventListener("click", () => {
    const turn = state.turns[state.shown];
    const { mimeType, data } = turn.outputs[turn.selected].part.inlineData;
    location.hash = "#verify";
    checkImage(state.key, `result of turn ${state.shown + 1}`, mimeType, data);
  });
  $("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("#compose").requestSubmit();
  });
}

wire();
const key = storedKey();
if (key) signIn(key, { quiet: true });
else route();
