// The attsf page: every text from the server is set as text (never parsed as HTML), so a
// file or class name cannot inject markup; the server's Content-Security-Policy allows
// only this script and the stylesheet beside it.
const $ = (id) => document.getElementById(id);
let current = null;  // the File to recognise

const pct = (v) => `${v.toFixed(1)} %`;  // the API answers in %

// an element with properties (className, textContent, ...) and children (nodes or text)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) node[k] = v;
  node.append(...children);
  return node;
}

function cardField(name, value) {
  return el("div", {}, el("b", { textContent: name }), value);
}

// the accuracy to expect: an exported model's held-out figures, else the run's test accuracy
function expected(c) {
  const ev = c.evaluation || {};
  if (ev.new_speaker) {
    const own = ev.own_speaker ? ` · ${ev.own_speaker.accuracy.toFixed(1)} % with several clips of the speaker` : "";
    return `${ev.new_speaker.accuracy.toFixed(1)} % on a new speaker's clip${own} (${ev.speakers.length} held-out actors)`;
  }
  if (c.cv) return `${c.cv.accuracy_mean.toFixed(2)} ± ${c.cv.accuracy_std.toFixed(2)} % (${c.cv.runs} runs)`;
  return c.test_accuracy != null ? `${c.test_accuracy.toFixed(2)} % (one run)` : "not recorded";
}

fetch("/health").then(r => r.json()).then(h => {
  const c = h.model || {};
  const audioOnly = !(c.modalities || []).some(m => m !== "audio");
  $("subtitle").textContent = audioOnly ? "attsf — emotion in speech (an audio-only network)"
    : "attsf — ATTSF-Net audio-visual emotion recognition";
  $("drop-text").textContent = audioOnly ? "Drop an audio clip here (or a video: its sound is used)"
    : "Drop a video or audio clip here";
  const data = c.train_clips ? `${c.dataset}, ${c.train_clips} clips of ${c.train_speakers} speakers` : (c.dataset || "unknown");
  const card = $("card");
  card.textContent = "";
  card.append(cardField("Model", `${c.name}`), cardField("Trained on", data),
              cardField("Input", (c.modalities || []).join(" + ")), cardField("Accuracy to expect", expected(c)),
              cardField("Chance", `${c.chance} % (${h.labels.length} classes)`));
  if (c.intended_use) card.append(cardField("Intended use", c.intended_use));
  if (c.limitations) card.append(cardField("Limitations", [].concat(c.limitations).join(" ")));
  if (c.licence) card.append(cardField("Licence", c.licence));
  card.title = `run ${c.run}; classes: ${h.labels.join(", ")}`;
  if (c.warning) { $("banner").textContent = c.warning; $("banner").hidden = false; }
  $("info").textContent = `${audioOnly ? "wav, flac, mp3, ogg or a video" : "mp4, mov, webm, mkv or audio"} · up to ` +
    `${h.max_upload_mb} MB and ${h.max_seconds} s · classes: ${h.labels.join(", ")}`;
});

// on a narrow screen the result panel is below the clip panel: bring it into view
function reveal() {
  if (window.matchMedia("(max-width: 820px)").matches) $("result-panel").scrollIntoView({ behavior: "smooth", block: "start" });
}

fetch("/examples").then(r => r.json()).then(list => {
  if (!list.length) return;
  const box = $("examples");
  box.replaceChildren(el("h3", { textContent: "…or try an example" }));
  for (const ex of list) {
    const b = el("button", { type: "button", className: "example" }, el("span", { className: "kind", textContent: ex.kind }),
                 ` ${ex.title}`);
    b.dataset.name = ex.name;
    b.addEventListener("click", async () => {
      const blob = await (await fetch(ex.url)).blob();
      choose(new File([blob], ex.name, { type: blob.type }));
      recognise();
    });
    box.appendChild(b);
  }
});

function choose(file) {
  current = file;
  $("error").textContent = "";
  $("status").textContent = file ? `${file.name} · ${(file.size / 2 ** 20).toFixed(2)} MB` : "";
  $("go").disabled = !file;
  const box = $("preview");
  box.replaceChildren();
  if (!file) return;
  const audio = file.type.startsWith("audio/") || /\.(wav|flac|ogg|mp3|m4a)$/i.test(file.name);
  box.appendChild(el(audio ? "audio" : "video", { controls: true, preload: "metadata", src: URL.createObjectURL(file) }));
}
$("file").addEventListener("change", () => choose($("file").files[0] || null));
const drop = $("drop");
for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
});

function chart(title, probs) {
  const div = el("div", { className: "chart" }, el("h3", { textContent: title }));
  const best = Object.keys(probs).reduce((a, b) => probs[a] >= probs[b] ? a : b);
  for (const [k, v] of Object.entries(probs)) {
    const fill = el("div", { className: "fill" });
    fill.style.width = `${v.toFixed(1)}%`;
    div.appendChild(el("div", { className: "bar" + (k === best ? " top" : "") }, el("span", { textContent: k }),
                       el("div", { className: "track" }, fill), el("span", { className: "pct", textContent: pct(v) })));
  }
  const ticks = el("div", { className: "ticks" });
  for (const t of [0, 25, 50, 75, 100]) {
    const tick = el("span", { textContent: t === 100 ? "100 %" : `${t}` });
    tick.style.left = `${t}%`;
    ticks.appendChild(tick);
  }
  div.appendChild(el("div", { className: "bar scale" }, el("span"), ticks, el("span")));
  return div;
}

function show(data, t0) {
  // no label: neither speech nor a face; the note says which is missing
  $("label").textContent = data.label ?? (data.note || "no answer").split(/[;(:]/)[0].trim();
  $("confidence").textContent = data.label ? pct(data.probabilities[data.label]) : "";
  const video = (data.face_detected || []).length > 0;
  const found = (data.face_detected || []).filter(Boolean).length;
  $("mods").textContent = (data.modalities.length ? `from ${data.modalities.join(" + ")}` : "no answer") +
    (found ? ` · face found in ${found} of ${data.face_detected.length} frames` : "") +
    (data.speech_seconds != null ? ` · ${data.speech_seconds.toFixed(1)} s of speech` : "") +
    (data.note ? ` · ${data.note}` : "");
  const charts = $("charts");
  charts.replaceChildren();
  const both = data.audio_probabilities && data.visual_probabilities;
  if (both) charts.appendChild(chart("Fused (audio + video): the answer", data.probabilities));
  const noFace = video ? "no face found" : "no video in this clip";
  const noSpeech = (data.note || "").includes("no speech") ? "no speech found" : "no audio in this clip";
  if (data.audio_probabilities) charts.appendChild(chart(both ? "Audio head" : `Audio head: the answer (${noFace})`, data.audio_probabilities));
  if (data.visual_probabilities) charts.appendChild(chart(both ? "Visual head" : `Visual head: the answer (${noSpeech})`, data.visual_probabilities));
  if (!data.audio_probabilities && !data.visual_probabilities && data.probabilities) charts.appendChild(chart("Prediction", data.probabilities));
  const faces = $("faces");
  faces.replaceChildren();
  (data.faces || []).forEach((b64, i) => {
    const t = data.face_times && data.face_times[i] != null ? `${data.face_times[i].toFixed(2)} s` : `frame ${i + 1}`;
    const fallback = data.face_detected && !data.face_detected[i];
    faces.appendChild(el("figure", { className: fallback ? "fallback" : "" },
                         el("img", { alt: `face crop at ${t}`, src: `data:image/jpeg;base64,${b64}` }),
                         el("figcaption", { textContent: t + (fallback ? " · no face" : "") })));
  });
  $("faces-block").hidden = !(data.faces || []).length;
  $("faces-note").textContent = found < (data.face_detected || []).length
    ? "Outlined in red: frames where no face was found; the crop there is a fallback (the previous face, or the frame centre)." : "";
  const rows = Object.entries(data.timings_ms).map(([k, v]) => [k, `${v} ms`]);
  rows.push(["round trip", `${(performance.now() - t0).toFixed(0)} ms`]);
  $("timings").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { textContent: k }), el("td", { textContent: v }))));
  $("placeholder").hidden = true;
  $("result").hidden = false;
  reveal();
}

async function recognise() {
  if (!current) { $("error").textContent = "Choose a clip first."; return; }
  $("error").textContent = "";
  const body = new FormData();
  body.append("file", current);
  $("go").disabled = true;
  $("spinner").hidden = false;
  $("status").textContent = `recognising ${current.name}…`;
  const t0 = performance.now();
  try {
    const resp = await fetch("/predict?faces=true", { method: "POST", body });
    const data = await resp.json().catch(() => ({ detail: resp.statusText }));
    if (!resp.ok) throw new Error(data.detail || resp.statusText);
    show(data, t0);
    $("status").textContent = `${current.name}: done`;
  } catch (err) {
    $("result").hidden = true;
    $("placeholder").hidden = true;  // the error stands where the answer would
    $("error").textContent = `${current.name}: ${err.message}`;
    $("status").textContent = "";
    reveal();
  } finally {
    $("go").disabled = false;
    $("spinner").hidden = true;
  }
}
$("go").addEventListener("click", recognise);
