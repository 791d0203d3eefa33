// Browser client: microphone -> WebSocket (/v1/sessions) -> gapless playback of the reply.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, micCtx: null, playCtx: null, stream: null,
  outRate: 22050, nextTime: 0, sources: new Set(),
  speechStoppedAt: null, turns: 0, currentReply: null,
};
// Exposed for tests and for curious users in the console.
window.jarvis = { events: [], finals: [], replies: [], samplesScheduled: 0, chunksPlayed: 0, latencies: [] };

function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "status " + (cls || ""); }

function logLine(cls, text) {
  const li = document.createElement("li"); li.className = cls; li.textContent = text;
  $("log").appendChild(li); return li;
}

function options() {
  return {
    speculative_stt: $("opt-speculative").checked,
    preemptive_llm: $("opt-preemptive").checked,
    partial_transcripts: $("opt-partials").checked,
    vad_silence_ms: Number($("opt-silence").value),
  };
}

function playPcm(buf) {
  const pcm = new Int16Array(buf);
  if (pcm.length === 0) return;
  const audio = state.playCtx.createBuffer(1, pcm.length, state.outRate);
  const ch = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = state.playCtx.createBufferSource();
  src.buffer = audio; src.connect(state.playCtx.destination);
  // Gapless: each chunk starts exactly where the previous one ends.
  const start = Math.max(state.playCtx.currentTime + 0.02, state.nextTime);
  src.start(start); state.nextTime = start + audio.duration;
  state.sources.add(src);
  src.onended = () => { state.sources.delete(src); if (state.sources.size === 0) setStatus("listening", "listening"); };
  window.jarvis.samplesScheduled += pcm.length; window.jarvis.chunksPlayed += 1;
  setStatus("speaking", "speaking");
}

function flushPlayback() {
  for (const src of state.sources) { try { src.stop(); } catch (e) { /* already stopped */ } }
  state.sources.clear(); state.nextTime = 0;
}

function addLatencyRow(lat, heardMs) {
  const row = document.createElement("tr");
  const f = (v) => (v === null || v === undefined ? "–" : Math.round(v));
  row.innerHTML = `<td>${state.turns}</td><td>${f(lat.turn_detected_ms)}</td><td>${f(lat.stt_ms)}</td>` +
    `<td>${f(lat.llm_first_token_ms)}</td><td>${f(lat.first_clause_ms)}</td><td>${f(lat.tts_first_audio_ms)}</td>` +
    `<td>${f(lat.first_audio_sent_ms)}</td><td>${f(heardMs)}</td>`;
  $("latency").querySelector("tbody").appendChild(row);
}

const handlers = {
  "session.created": (e) => {
    state.outRate = e.output_audio.sample_rate;
    state.ws.send(JSON.stringify({ type: "session.update", session: options() }));
    setStatus("listening", "listening");
  },
  "speech.started": () => setStatus("hearing you", "listening"),
  "speech.stopped": () => { state.speechStoppedAt = performance.now(); state.firstAudioAt = null; },
  "transcript.partial": (e) => { $("partial").textContent = e.text; },
  "transcript.final": (e) => {
    $("partial").textContent = "";
    if (e.text) { logLine("user", e.text); window.jarvis.finals.push(e.text); }
  },
  "response.text.delta": (e) => {
    if (!state.currentReply || state.currentReply.dataset.id !== e.response_id) {
      state.currentReply = logLine("assistant", ""); state.currentReply.dataset.id = e.response_id;
    }
    state.currentReply.textContent += e.delta;
  },
  "response.audio.started": () => {},
  "response.done": (e) => {
    state.turns += 1; window.jarvis.replies.push(e.text); window.jarvis.latencies.push(e.latency);
    // End of speech as the client knows it: speech.stopped arrived turn_detected_ms after it.
    const speechEnd = state.speechStoppedAt - (e.latency.turn_detected_ms || 0);
    const heard = state.firstAudioAt && state.speechStoppedAt ? state.firstAudioAt - speechEnd : null;
    addLatencyRow(e.latency, heard);
  },
  "response.cancelled": () => {
    flushPlayback();  // stop at once: the user is talking
    if (state.currentReply) state.currentReply.classList.add("cancelled");
  },
  "error": (e) => logLine("error", `${e.code}: ${e.message}`),
};

// Sessions are cheapest on the server's own sessions port (/v1/sessions/endpoint); this page's
// origin also serves them (through Serve's HTTP proxy), the way in when the port is closed or
// the page came over https without a public wss:// URL configured.
async function sessionsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const here = `${proto}//${location.host}/v1/sessions`;
  try {
    const r = await fetch("/v1/sessions/endpoint");
    if (!r.ok) return here;
    const e = await r.json();
    if (e.url) return e.url;
    if (e.port && proto === "ws:") return `ws://${location.hostname}:${e.port}${e.path}`;
  } catch (err) { /* an older server: same origin */ }
  return here;
}

async function start() {
  $("start").disabled = true;
  try {
    state.playCtx = new AudioContext();
    state.micCtx = new AudioContext();
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await state.micCtx.audioWorklet.addModule("/web/mic-worklet.js");
    const source = state.micCtx.createMediaStreamSource(state.stream);
    const node = new AudioWorkletNode(state.micCtx, "mic-capture");
    source.connect(node);
    const key = $("apikey").value.trim();
    const query = key ? "?api_key=" + encodeURIComponent(key) : "";
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const here = `${proto}//${location.host}/v1/sessions`;
    node.port.onmessage = (m) => { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(m.data); };
    const connect = (url) => {
      window.jarvis.sessionsUrl = url;
      const ws = new WebSocket(url + query);
      state.ws = ws;
      ws.binaryType = "arraybuffer";
      let created = false;
      ws.onmessage = (m) => {
        if (typeof m.data !== "string") {
          if (state.firstAudioAt === null || state.firstAudioAt === undefined) state.firstAudioAt = performance.now();
          playPcm(m.data); return;
        }
        const e = JSON.parse(m.data); window.jarvis.events.push(e.type);
        if (e.type === "session.created") created = true;
        (handlers[e.type] || (() => {}))(e);
      };
      ws.onclose = (e) => {
        if (state.ws && state.ws !== ws) return;
        // The sessions port unreachable from here (a firewall, another node): this origin.
        if (!created && url !== here && e.code === 1006) { connect(here); return; }
        setStatus(`closed (${e.code}${e.reason ? ": " + e.reason : ""})`, e.code === 1000 ? "" : "error"); stop();
      };
    };
    connect(await sessionsUrl());
    $("stop").disabled = false;
  } catch (err) {
    setStatus("error: " + err.message, "error"); $("start").disabled = false;
  }
}

function stop() {
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close(1000, "bye");
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.micCtx) state.micCtx.close();
  state.ws = null; state.stream = null; state.micCtx = null;
  $("start").disabled = false; $("stop").disabled = true;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
for (const id of ["opt-speculative", "opt-preemptive", "opt-partials", "opt-silence"]) {
  $(id).addEventListener("change", () => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "session.update", session: options() }));
  });
}
