// Small JPEG thumbnails (and the prompt) of the calls made from this browser, keyed by request id,
// so the usage table can show what each call made. They never leave the browser.

const STORE = "flashbulb.thumbs";
const KEEP = 150; // ~4 KB each

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || "{}");
  } catch {
    return {};
  }
}

export function thumbFor(requestId) {
  return load()[requestId] || null;
}

/** Draw `image` (a loaded <img>) into a JPEG of at most `size` px a side and remember it. */
export function rememberThumb(requestId, image, prompt) {
  const size = 96;
  const scale = Math.min(1, size / Math.max(image.naturalWidth, image.naturalHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // transparent PNGs (background removed) get white, as JPEG has no alpha
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const all = load();
  all[requestId] = { src: canvas.toDataURL("image/jpeg", 0.7), prompt: (prompt || "").slice(0, 200), at: Date.now() };
  const newest = Object.entries(all).sort((a, b) => b[1].at - a[1].at).slice(0, KEEP);
  for (let keep = newest.length; keep > 0; keep = Math.floor(keep / 2)) {
    try {
      localStorage.setItem(STORE, JSON.stringify(Object.fromEntries(newest.slice(0, keep))));
      return;
    } catch {
      /* storage full: keep fewer */
    }
  }
}
