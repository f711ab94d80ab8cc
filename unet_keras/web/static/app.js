// The page. One slice: upload it -> /api/segment; upload its truth mask -> /api/dice with the
// slice, which answers Dice, IoU and the agreement overlay (true positives, false positives,
// false negatives). Several slices (files, a folder or a .zip, read here in the browser): each
// slice with a mask -> /api/dice, without -> /api/segment; a table and the means.
"use strict";

const $ = (id) => document.getElementById(id);
const SLICE_SUFFIXES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".mat"];
const MAX_BATCH = 1000; // slices in one batch
const BATCH_CONCURRENCY = 3; // requests in flight; the server batches them for the model
let maxUploadBytes = Infinity;
let current = null; // the last /api/segment answer, and the file it came from
let batchRun = 0; // a new selection makes the running batch's answers stale

// --- messages, next to the field they are about -----------------------------------------------

function setError(box, input, message) {
  $(box).textContent = message;
  $(box).hidden = !message;
  for (const id of [].concat(input)) {
    if (message) $(id).setAttribute("aria-invalid", "true");
    else $(id).removeAttribute("aria-invalid");
  }
  if (message) $(box).scrollIntoView({ block: "nearest" });
}

const segmentError = (message) => setError("segment-error", "slice-input", message);
const diceError = (message) => setError("dice-error", "truth-input", message);
const batchError = (message) => setError("batch-error", ["batch-input", "folder-input"], message);

function mb(bytes) {
  return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MB`;
}

async function postFiles(url, files) {
  for (const file of Object.values(files)) {
    if (file.size > maxUploadBytes) {
      throw new Error(`${file.name} is ${mb(file.size)}; ` +
        `the limit is ${(maxUploadBytes / 2 ** 20).toFixed(0)} MB`);
    }
  }
  const form = new FormData();
  for (const [field, file] of Object.entries(files)) form.append(field, file, file.name);
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form });
  } catch (err) {
    throw new Error(`the server did not answer (${err.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through to the status line
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(`${detail} (HTTP ${response.status})`);
  }
  return body;
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

const count = (n) => n.toLocaleString("en-US");

function setNumber(id, value, text) {
  $(id).textContent = text;
  $(id).dataset.value = String(value);
}

// --- one slice --------------------------------------------------------------------------------

function resetScores() {
  $("scores").hidden = true;
  $("legend").hidden = true;
  $("dice-value").textContent = "";
  $("iou-value").textContent = "";
  $("truth-input").value = "";
  diceError("");
}

async function segment(file) {
  segmentError("");
  resetScores();
  $("results").hidden = true;
  $("truth-input").disabled = true;
  $("segment-status").textContent = `Segmenting ${file.name}…`;
  try {
    current = await postFiles("/api/segment", { file });
  } catch (err) {
    current = null;
    $("segment-status").textContent = "";
    $("dice-status").textContent = "Segment a slice first.";
    segmentError(err.message);
    return false;
  }
  current.file = file;
  $("original-img").src = current.image;
  $("mask-img").src = current.mask;
  $("overlay-img").src = current.overlay;
  $("overlay-img").alt = "The slice with the predicted tumor outlined";
  $("overlay-caption").textContent = "Prediction overlay";
  setNumber("area-px", current.tumor_area_px, count(current.tumor_area_px));
  setNumber("area-pct", current.tumor_area_percent, current.tumor_area_percent.toFixed(2));
  $("image-size").textContent = `${current.width} × ${current.height}`;
  $("best-guess").hidden = !current.best_guess;
  const link = $("mask-download");
  link.href = current.mask;
  link.download = `${stem(current.filename)}_mask.png`;
  $("results").hidden = false;
  $("segment-status").textContent =
    `${current.filename}: ${current.width} × ${current.height} pixels, ` +
    `model ${current.inference_ms.toFixed(0)} ms`;
  $("truth-input").disabled = false;
  $("dice-status").textContent = "Upload the ground-truth mask of this slice.";
  $("results").scrollIntoView({ block: "nearest" });
  return true;
}

async function score(truth) {
  diceError("");
  $("scores").hidden = true;
  $("legend").hidden = true;
  $("dice-status").textContent = `Comparing with ${truth.name}…`;
  const scored = current;
  let result;
  try {
    // The slice, not the mask shown: the server segments it again and answers the agreement
    // overlay drawn on it, from the same prediction as the Dice.
    result = await postFiles("/api/dice", { truth, image: scored.file });
  } catch (err) {
    $("dice-status").textContent = "";
    diceError(err.message);
    return;
  }
  if (scored !== current) return; // another slice was chosen meanwhile
  setNumber("dice-value", result.dice, result.dice.toFixed(4));
  setNumber("iou-value", result.iou, result.iou.toFixed(4));
  setNumber("tp-px", result.true_positive_px, count(result.true_positive_px));
  setNumber("fp-px", result.false_positive_px, count(result.false_positive_px));
  setNumber("fn-px", result.false_negative_px, count(result.false_negative_px));
  $("overlay-img").src = result.agreement;
  $("overlay-img").alt = `Agreement of the prediction with ${truth.name}: true positives, ` +
    "false positives and false negatives in the legend's colours";
  $("overlay-caption").textContent = `Agreement with ${truth.name}`;
  $("scores").hidden = false;
  $("legend").hidden = false;
  $("dice-status").textContent =
    `${truth.name}: ${count(result.truth_area_px)} tumor pixels, ` +
    `prediction ${count(result.predicted_area_px)}`;
  $("scores").scrollIntoView({ block: "nearest" });
  $("legend").scrollIntoView({ block: "nearest" });
}

// --- several slices: files, a folder, or a .zip -----------------------------------------------

// A .zip read in the browser (stored or deflated entries; no ZIP64, no encryption). Returns
// [{path, size, load}] where load() decompresses the entry into a File.
async function zipEntries(zip) {
  const bytes = new Uint8Array(await zip.arrayBuffer());
  const view = new DataView(bytes.buffer);
  const bad = (why) => new Error(`${zip.name}: ${why}`);
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      end = i;
      break;
    }
  }
  if (end < 0) throw bad("not a zip archive (no central directory found)");
  const total = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  if (total === 0xffff || at === 0xffffffff) {
    throw bad("ZIP64 archives are not supported; zip fewer or smaller slices");
  }
  const entries = [];
  const utf8 = new TextDecoder();
  for (let k = 0; k < total; k++) {
    if (at + 46 > bytes.length || view.getUint32(at, true) !== 0x02014b50) {
      throw bad("the archive is damaged (bad central directory)");
    }
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const packed = view.getUint32(at + 20, true);
    const size = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const local = view.getUint32(at + 42, true);
    const path = utf8.decode(bytes.subarray(at + 46, at + 46 + nameLength));
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
    if (path.endsWith("/")) continue;
    const name = path.split("/").pop();
    const load = async () => {
      if (flags & 1) throw bad(`${path} is encrypted`);
      if (view.getUint32(local, true) !== 0x04034b50) throw bad(`${path}: damaged entry`);
      const start = local + 30 + view.getUint16(local + 26, true) +
        view.getUint16(local + 28, true);
      const data = bytes.subarray(start, start + packed);
      let blob;
      if (method === 0) {
        blob = new Blob([data]);
      } else if (method === 8) {
        const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
        try {
          blob = await new Response(stream).blob();
        } catch {
          throw bad(`${path} could not be decompressed`);
        }
      } else {
        throw bad(`${path} uses compression method ${method}; only stored and deflate are read`);
      }
      return new File([blob], name);
    };
    entries.push({ path, size, load });
  }
  return entries;
}

// A file's role by its path: a slice, or the mask of the slice with the same key.
function classify(path) {
  const parts = path.split("/").filter((p) => p && p !== ".");
  const name = parts.pop() || "";
  const dot = name.lastIndexOf(".");
  const suffix = dot > 0 ? name.slice(dot).toLowerCase() : "";
  if (name.startsWith(".") || parts.includes("__MACOSX") || !SLICE_SUFFIXES.includes(suffix)) {
    return null;
  }
  let base = name.slice(0, dot);
  let isMask = false;
  const named = base.match(/^(.+?)[_-]mask$/i);
  if (named && suffix !== ".mat") {
    isMask = true;
    base = named[1];
  }
  const parent = (parts[parts.length - 1] || "").toLowerCase();
  if (!isMask && suffix !== ".mat" && (parent === "masks" || parent === "mask")) isMask = true;
  // images/1.png and masks/1.png share the key "/1"; p/p_1.tif and p/p_1_mask.tif "p/p_1".
  const folders = /^(images?|masks?)$/.test(parent) ? parts.slice(0, -1) : parts;
  return { key: `${folders.join("/")}/${base}`, isMask, isMat: suffix === ".mat" };
}

async function collect(files) {
  const items = [];
  for (const file of files) {
    const path = file.webkitRelativePath || file.name;
    if (path.toLowerCase().endsWith(".zip")) {
      for (const entry of await zipEntries(file)) {
        items.push({ ...entry, path: `${file.name}/${entry.path}` });
      }
    } else {
      items.push({ path, size: file.size, load: async () => file });
    }
  }
  const slices = new Map(); // key -> [item]
  const masks = new Map();
  const skipped = [];
  for (const item of items) {
    const role = classify(item.path);
    if (role === null) {
      skipped.push(item.path);
      continue;
    }
    const into = role.isMask ? masks : slices;
    if (!into.has(role.key)) into.set(role.key, []);
    into.get(role.key).push({ ...item, isMat: role.isMat });
  }
  const rows = [];
  for (const [key, found] of slices) {
    for (const slice of found) {
      const mask = masks.has(key) ? masks.get(key)[0] : slice.isMat ? slice : null;
      rows.push({ slice, mask });
    }
  }
  const orphans = [...masks].filter(([key]) => !slices.has(key)).flatMap(([, m]) => m);
  const natural = (a, b) => a.localeCompare(b, "en", { numeric: true });
  rows.sort((a, b) => natural(a.slice.path, b.slice.path));
  return { rows, skipped, orphans: orphans.map((m) => m.path).sort(natural) };
}

function fewNames(paths) {
  const shown = paths.slice(0, 5).join(", ");
  return paths.length > 5 ? `${shown} and ${paths.length - 5} more` : shown;
}

function cell(row, className = "") {
  const td = document.createElement("td");
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function numberCell(td, value, text) {
  td.textContent = text;
  td.dataset.value = String(value);
}

function addRow(entry) {
  const tr = document.createElement("tr");
  tr.dataset.slice = entry.slice.path;
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = entry.slice.path;
  tr.appendChild(th);
  entry.cells = {
    size: cell(tr), areaPx: cell(tr, "num area-px"), areaPct: cell(tr, "num area-pct"),
    mask: cell(tr, "mask"), truthPx: cell(tr, "num truth-px"), dice: cell(tr, "num dice"),
    iou: cell(tr, "num iou"), action: cell(tr),
  };
  entry.cells.areaPx.textContent = "…";
  entry.cells.mask.textContent = entry.mask
    ? (entry.mask === entry.slice ? "in the .mat" : entry.mask.path) : "—";
  $("batch-rows").appendChild(tr);
  entry.tr = tr;
}

async function runOne(entry) {
  const c = entry.cells;
  try {
    const slice = await entry.slice.load();
    let width, height, area, guessed;
    if (entry.mask) {
      const truth = entry.mask === entry.slice ? slice : await entry.mask.load();
      const r = await postFiles("/api/dice", { truth, image: slice });
      [width, height, area] = [r.width, r.height, r.predicted_area_px];
      numberCell(c.truthPx, r.truth_area_px, count(r.truth_area_px));
      numberCell(c.dice, r.dice, r.dice.toFixed(4));
      numberCell(c.iou, r.iou, r.iou.toFixed(4));
      entry.result = { area, percent: (100 * area) / (width * height), dice: r.dice, iou: r.iou };
      guessed = r.best_guess;
      entry.truthFile = truth;
    } else {
      const r = await postFiles("/api/segment", { file: slice });
      [width, height, area] = [r.width, r.height, r.tumor_area_px];
      c.truthPx.textContent = c.dice.textContent = c.iou.textContent = "—";
      entry.result = { area, percent: r.tumor_area_percent };
      guessed = r.best_guess;
    }
    entry.sliceFile = slice;
    c.size.textContent = `${width} × ${height}`;
    numberCell(c.areaPx, area, count(area));
    numberCell(c.areaPct, entry.result.percent, entry.result.percent.toFixed(2));
    if (guessed) {
      c.areaPx.append(" (best guess)");
      c.areaPx.title = "No pixel reached the threshold: the model's best guess";
      entry.tr.classList.add("best-guess");
    }
    const show = document.createElement("button");
    show.type = "button";
    show.className = "show";
    show.textContent = "Show";
    show.title = "Show this slice above, with its agreement overlay if it has a mask";
    show.addEventListener("click", () => showRow(entry));
    c.action.appendChild(show);
  } catch (err) {
    entry.error = err.message;
    for (const td of Object.values(c)) td.remove();
    const td = cell(entry.tr, "row-error");
    td.colSpan = 8;
    td.textContent = err.message;
  }
}

function showMeans(entries) {
  const done = entries.filter((e) => e.result);
  const scored = done.filter((e) => e.result.dice !== undefined);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  $("mean-label").textContent = `Mean (${done.length} of ${entries.length} slices)`;
  if (done.length) {
    const area = mean(done.map((e) => e.result.area));
    numberCell($("mean-area-px"), area, area.toLocaleString("en-US", { maximumFractionDigits: 1 }));
    const pct = mean(done.map((e) => e.result.percent));
    numberCell($("mean-area-pct"), pct, pct.toFixed(2));
  }
  $("mean-masks").textContent = `${scored.length} with masks`;
  for (const [id, key] of [["mean-dice", "dice"], ["mean-iou", "iou"]]) {
    if (scored.length) {
      const value = mean(scored.map((e) => e.result[key]));
      numberCell($(id), value, value.toFixed(4));
    } else {
      $(id).textContent = "—";
      delete $(id).dataset.value;
    }
  }
}

async function runBatch(files) {
  const run = ++batchRun;
  batchError("");
  delete $("batch-status").dataset.done;
  $("batch-status").textContent = "Reading the files…";
  $("batch-rows").replaceChildren();
  $("batch-table").hidden = true;
  for (const id of ["mean-area-px", "mean-area-pct", "mean-masks", "mean-dice", "mean-iou"]) {
    $(id).textContent = "";
    delete $(id).dataset.value;
  }
  let found;
  try {
    found = await collect(files);
  } catch (err) {
    $("batch-status").textContent = "";
    batchError(err.message);
    return;
  }
  const notes = [];
  if (found.skipped.length) {
    notes.push(`Skipped ${found.skipped.length} file(s) that are not PNG, JPEG, TIFF or .mat: ` +
      fewNames(found.skipped) + ".");
  }
  if (found.orphans.length) {
    notes.push(`Masks with no slice: ${fewNames(found.orphans)}.`);
  }
  if (!found.rows.length) {
    $("batch-status").textContent = notes.join(" ");
    batchError("No slices found: choose PNG, JPEG, TIFF or Figshare .mat slices, a folder of " +
      "them, or a .zip of them.");
    return;
  }
  if (found.rows.length > MAX_BATCH) {
    $("batch-status").textContent = "";
    batchError(`${found.rows.length} slices; the page scores at most ${MAX_BATCH} at once.`);
    return;
  }
  const entries = found.rows;
  entries.forEach(addRow);
  $("batch-table").hidden = false;
  let next = 0;
  let finished = 0;
  const progress = () => {
    $("batch-status").textContent =
      `${finished} of ${entries.length} slices done. ${notes.join(" ")}`.trim();
  };
  progress();
  const worker = async () => {
    while (next < entries.length && run === batchRun) {
      const entry = entries[next++];
      await runOne(entry);
      if (run !== batchRun) return;
      finished++;
      progress();
      showMeans(entries);
    }
  };
  await Promise.all(Array.from({ length: BATCH_CONCURRENCY }, worker));
  if (run !== batchRun) return;
  const failed = entries.filter((e) => e.error).length;
  $("batch-status").textContent = `${entries.length} slices done` +
    (failed ? `, ${failed} could not be read (see their rows)` : "") + `. ${notes.join(" ")}`;
  $("batch-status").dataset.done = "true";
}

async function showRow(entry) {
  $("single-title").scrollIntoView({ block: "start" });
  if (await segment(entry.sliceFile)) {
    if (entry.truthFile) await score(entry.truthFile);
  }
}

// --- the model --------------------------------------------------------------------------------

async function describeModel() {
  try {
    const response = await fetch("/api/model");
    const info = await response.json();
    const a = info.architecture;
    const shape = a.input_shape.map((d) => (d === null ? "any" : d)).join(" × ");
    maxUploadBytes = info.max_upload_bytes;
    $("model-info").textContent =
      `Model “${info.run_name}”: U-Net, depth ${a.depth}, ${a.base_filters} base filters` +
      `${a.attention ? ", attention gates" : ""}, input ${shape}, ` +
      `${count(info.parameters)} parameters, threshold ${info.threshold}` +
      `${info.tta ? ", flip TTA (mean over the slice and its two flips)" : ""}` +
      `${info.postprocess === "no post-processing" ? "" : `, then ${info.postprocess}`}. ` +
      `Uploads up to ${(info.max_upload_bytes / 2 ** 20).toFixed(0)} MB.`;
    $("model-card-link").href = info.model_card_url;
    const colors = info.agreement_colors;
    $("swatch-tp").style.backgroundColor = colors.true_positive;
    $("swatch-fp").style.backgroundColor = colors.false_positive;
    $("swatch-fn").style.backgroundColor = colors.false_negative;
  } catch (err) {
    $("model-info").textContent = "";
    setError("model-error", [], `The server did not describe its model: ${err.message}`);
  }
}

$("slice-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) segment(file);
});
$("truth-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file && current) score(file);
});
for (const id of ["batch-input", "folder-input"]) {
  $(id).addEventListener("change", (event) => {
    const files = [...event.target.files];
    if (files.length) runBatch(files);
  });
}
describeModel();
