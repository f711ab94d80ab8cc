// The page: upload a slice -> /api/segment; upload its truth mask -> /api/dice.
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadBytes = Infinity;
let current = null; // the last /api/segment answer

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function postFiles(url, files) {
  for (const file of Object.values(files)) {
    if (file.size > maxUploadBytes) {
      throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; ` +
        `the limit is ${(maxUploadBytes / 2 ** 20).toFixed(0)} MB`);
    }
  }
  const form = new FormData();
  for (const [field, file] of Object.entries(files)) form.append(field, file, file.name);
  const response = await fetch(url, { method: "POST", body: form });
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

function resetScores() {
  $("scores").hidden = true;
  $("dice-value").textContent = "";
  $("iou-value").textContent = "";
  $("truth-input").value = "";
}

async function segment(file) {
  showError("");
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
    showError(err.message);
    return;
  }
  $("original-img").src = current.image;
  $("mask-img").src = current.mask;
  $("overlay-img").src = current.overlay;
  $("area-px").textContent = current.tumor_area_px.toLocaleString("en-US");
  $("area-pct").textContent = current.tumor_area_percent.toFixed(2);
  $("area-pct").dataset.value = String(current.tumor_area_percent);
  $("area-px").dataset.value = String(current.tumor_area_px);
  $("image-size").textContent = `${current.width} × ${current.height}`;
  const link = $("mask-download");
  link.href = current.mask;
  link.download = `${stem(current.filename)}_mask.png`;
  $("results").hidden = false;
  $("segment-status").textContent =
    `${current.filename}: ${current.width} × ${current.height} pixels, ` +
    `model ${current.inference_ms.toFixed(0)} ms`;
  $("truth-input").disabled = false;
  $("dice-status").textContent = "Upload the ground-truth mask of this slice.";
}

async function score(truth) {
  showError("");
  $("scores").hidden = true;
  $("dice-status").textContent = `Comparing with ${truth.name}…`;
  const maskBlob = await (await fetch(current.mask)).blob();
  const prediction = new File([maskBlob], `${stem(current.filename)}_mask.png`,
    { type: "image/png" });
  let result;
  try {
    result = await postFiles("/api/dice", { truth, prediction });
  } catch (err) {
    $("dice-status").textContent = "";
    showError(err.message);
    return;
  }
  $("dice-value").textContent = result.dice.toFixed(4);
  $("dice-value").dataset.value = String(result.dice);
  $("iou-value").textContent = result.iou.toFixed(4);
  $("iou-value").dataset.value = String(result.iou);
  $("scores").hidden = false;
  $("dice-status").textContent =
    `${truth.name}: ${result.truth_area_px.toLocaleString("en-US")} tumor pixels, ` +
    `prediction ${result.predicted_area_px.toLocaleString("en-US")}`;
}

async function describeModel() {
  try {
    const response = await fetch("/api/model");
    const info = await response.json();
    const a = info.architecture;
    const shape = a.input_shape.map((d) => (d === null ? "any" : d)).join(" × ");
    maxUploadBytes = info.max_upload_bytes;
    $("model-info").textContent =
      `Model ${info.model_path}: U-Net, depth ${a.depth}, ${a.base_filters} base filters` +
      `${a.attention ? ", attention gates" : ""}, input ${shape}, ` +
      `${info.parameters.toLocaleString("en-US")} parameters. ` +
      `Uploads up to ${(info.max_upload_bytes / 2 ** 20).toFixed(0)} MB.`;
  } catch (err) {
    $("model-info").textContent = "";
    showError(`The server did not describe its model: ${err.message}`);
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
describeModel();
