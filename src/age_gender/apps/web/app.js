"use strict";
// The page of serve.py: an image or the webcam, sent to POST v1/predict, faces drawn on top.
// Plain JavaScript, no build step and nothing fetched from elsewhere: it works offline.

// The same smoothing as the demo's video (tracking.py): each frame's boxes are matched to the
// previous ones by overlap, and age, its spread and interval and P(male) are averaged over a
// track's last frames.
const WINDOW = 8;
const MIN_OVERLAP = 0.3;
const MAX_MISSED = 5;
const BOX_COLOUR = "rgb(255, 140, 0)";

// The mean of each of `keys` over a track's faces, as the demo's tracker averages every
// field; null where the model gives none (dlib-models).
function meanOf(history, keys) {
  return Object.fromEntries(keys.map((key) => [key, history.some((past) => past[key] === null)
    ? null : history.reduce((sum, past) => sum + past[key], 0) / history.length]));
}

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const video = $("video");
let camera = null; // the running camera loop's stream, or null

function overlap(a, b) {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const inter = width * height;
  const area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (area - inter);
}

function maleProbability(face) {
  return face.gender === "M" ? face.gender_probability : 1 - face.gender_probability;
}

class FaceTracker {
  constructor() {
    this.tracks = [];
  }

  // Smoothed copies of this frame's faces, in the order given.
  update(faces) {
    const unmatched = new Set(this.tracks.keys());
    const smoothed = faces.map((face) => {
      const box = [face.x_min, face.y_min, face.x_max, face.y_max];
      let best = null;
      for (const index of unmatched) {
        if (best === null || overlap(this.tracks[index].box, box) > overlap(this.tracks[best].box, box)) best = index;
      }
      let track;
      if (best !== null && overlap(this.tracks[best].box, box) >= MIN_OVERLAP) {
        track = this.tracks[best];
        unmatched.delete(best);
        Object.assign(track, { box, missed: 0 });
      } else {
        track = { box, history: [], missed: 0 };
        this.tracks.push(track);
      }
      track.history.push(face);
      if (track.history.length > WINDOW) track.history.shift();
      const mean = (value) => track.history.reduce((sum, past) => sum + value(past), 0) / track.history.length;
      const male = mean(maleProbability);
      return {
        ...face,
        age: mean((past) => past.age),
        ...meanOf(track.history, ["age_std", "age_low", "age_high"]),
        gender: male >= 0.5 ? "M" : "F",
        gender_probability: Math.max(male, 1 - male),
      };
    });
    for (const index of unmatched) this.tracks[index].missed += 1;
    this.tracks = this.tracks.filter((track) => track.missed <= MAX_MISSED);
    return smoothed;
  }
}

function label(face) {
  return `${Math.round(face.age)}, ${face.gender}`;
}

// Boxes and labels scaled with the face, as drawing.py draws them in the demo.
function drawFaces(context, faces) {
  for (const face of faces) {
    const width = face.x_max - face.x_min;
    const scale = Math.max(width / 120, 0.4);
    const thickness = Math.max(Math.round(scale * 2), 1);
    context.lineWidth = thickness;
    context.strokeStyle = BOX_COLOUR;
    context.strokeRect(face.x_min, face.y_min, width, face.y_max - face.y_min);
    context.font = `bold ${Math.round(30 * scale)}px sans-serif`;
    const text = label(face);
    const textWidth = context.measureText(text).width;
    const textHeight = Math.round(34 * scale);
    const top = Math.max(face.y_min - textHeight - thickness, 0);
    context.fillStyle = BOX_COLOUR;
    context.fillRect(face.x_min, top, textWidth + 2 * thickness, textHeight);
    context.fillStyle = "white";
    context.textBaseline = "top";
    context.fillText(text, face.x_min + thickness, top + 2 * scale);
  }
}

function listFaces(faces) {
  $("faces").replaceChildren(
    ...faces.map((face) => {
      const item = document.createElement("li");
      const spread = face.age_std === null ? "" : ` ± ${face.age_std.toFixed(1)}`;
      const interval = face.age_low === null ? "" :
        ` (90 %: ${face.age_low.toFixed(0)}-${face.age_high.toFixed(0)})`;
      item.innerHTML = `<span class="label"></span> age ${face.age.toFixed(1)}${spread}${interval}, ` +
        `${face.gender === "F" ? "female" : "male"} ${(100 * face.gender_probability).toFixed(0)}%`;
      item.querySelector(".label").textContent = label(face);
      return item;
    }),
  );
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function authorization() {
  const token = $("token").value || localStorage.getItem("age-gender-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// The server's answer for an image (a File or a Blob), or an Error with its message.
async function predict(image) {
  const body = new FormData();
  body.append("image", image, image.name || "frame.jpg");
  const response = await fetch("v1/predict", { method: "POST", body, headers: authorization() });
  const answer = await response.json().catch(() => ({ detail: response.statusText }));
  if (response.status === 401) $("token").hidden = false;
  if (!response.ok) {
    throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
  }
  return answer;
}

function showStage(mode) {
  $("hint").hidden = true;
  video.hidden = mode !== "camera";
  canvas.classList.toggle("overlay", mode === "camera");
}

// A refused image leaves no earlier result on screen beside its error.
function clearResult() {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  canvas.width = 0;
  canvas.height = 0;
  listFaces([]);
}

async function showImage(file) {
  stopCamera();
  clearResult();
  setStatus(`estimating ${file.name}…`);
  try {
    const [bitmap, result] = await Promise.all([createImageBitmap(file), predict(file)]);
    showStage("image");
    canvas.width = result.width;
    canvas.height = result.height;
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0, result.width, result.height);
    drawFaces(context, result.faces);
    listFaces(result.faces);
    setStatus(`${result.faces.length} face(s) in ${result.time_ms} ms (${result.model})`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function startCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    // Browsers give the camera only to https:// pages and to localhost.
    setStatus(
      "no camera: this page is not a secure context (plain http:// from another machine), so " +
        "the browser withholds the camera. Open it over https:// (serve.py --ssl-certfile and " +
        "--ssl-keyfile) or as http://localhost on the machine that runs serve.py. Uploads work.",
      true,
    );
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    setStatus(`no camera: ${error.message}`, true);
    return;
  }
  camera = stream;
  $("camera").textContent = "Stop camera";
  $("camera").classList.add("on");
  video.srcObject = stream;
  await video.play();
  showStage("camera");
  const tracker = new FaceTracker();
  const grab = document.createElement("canvas");
  let frames = 0;
  let since = performance.now();
  let rate = 0;
  // One frame in flight at a time: the page never queues more than the server can take.
  while (camera === stream) {
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    const frame = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
    let result;
    try {
      result = await predict(frame);
    } catch (error) {
      setStatus(error.message, true);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    if (camera !== stream) break;
    const faces = tracker.update(result.faces);
    canvas.width = grab.width;
    canvas.height = grab.height;
    drawFaces(canvas.getContext("2d"), faces);
    listFaces(faces);
    frames += 1;
    const elapsed = (performance.now() - since) / 1000;
    if (elapsed >= 1) {
      rate = frames / elapsed;
      frames = 0;
      since = performance.now();
    }
    setStatus(`${rate.toFixed(1)} frames/s · ${faces.length} face(s) · ${result.time_ms} ms per frame on the server`);
  }
}

function stopCamera() {
  if (camera === null) return;
  camera.getTracks().forEach((track) => track.stop());
  camera = null;
  video.srcObject = null;
  $("camera").textContent = "Camera";
  $("camera").classList.remove("on");
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) showImage(event.target.files[0]);
});
$("camera").addEventListener("click", () => (camera ? stopCamera() : startCamera()));
$("token").addEventListener("change", (event) => localStorage.setItem("age-gender-token", event.target.value));
const stage = $("stage");
stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("drop");
});
stage.addEventListener("dragleave", () => stage.classList.remove("drop"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("drop");
  if (event.dataTransfer.files.length) showImage(event.dataTransfer.files[0]);
});

fetch("v1/model", { headers: authorization() })
  .then(async (response) => {
    if (response.status === 401) {
      $("token").hidden = false;
      $("model").textContent = "enter the API token";
      return;
    }
    const model = await response.json();
    const backbone = model.card ? `${model.card.backbone}, ` : "";
    $("model").textContent = `${model.model} (${backbone}detector ${model.detector.kind})`;
  })
  .catch(() => ($("model").textContent = "server unreachable"));
