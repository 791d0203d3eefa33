// Live latency dashboard: polls /v1/metrics/dashboard (the whole application's last 60 s).
"use strict";

const $ = (id) => document.getElementById(id);
const STAGES = [
  ["voice_to_voice", "voice-to-voice"],
  ["turn_detected", "turn detected"],
  ["stt", "transcript"],
  ["llm_first_token", "LLM first token"],
  ["first_clause", "first clause"],
  ["tts_first_audio", "TTS first audio"],
];
const history = []; // [{p50, p90}] of voice-to-voice, one per poll
const HISTORY = 150; // 5 minutes at 2 s

function ms(v) {
  return v === null || v === undefined ? "-" : Math.round(v).toString();
}

function rows(tbody, cells) {
  tbody.replaceChildren(
    ...cells.map((row) => {
      const tr = document.createElement("tr");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      }
      return tr;
    }),
  );
}

function trend() {
  const svg = $("trend");
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  const values = history.flatMap((p) => [p.p50, p.p90]).filter((v) => v !== null);
  const top = Math.max(500, ...values) * 1.1;
  const line = (key, color) => {
    const points = history
      .map((p, i) => (p[key] === null ? null : `${(i / Math.max(1, history.length - 1)) * w},${h - (p[key] / top) * h}`))
      .filter((p) => p !== null);
    return points.length
      ? `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(" ")}"/>`
      : "";
  };
  svg.innerHTML =
    `<text x="4" y="14" font-size="12">${Math.round(top)} ms</text>` +
    `<line x1="0" y1="${h - 1}" x2="${w}" y2="${h - 1}" stroke="#999"/>` +
    line("p50", "#2a7ae2") + line("p90", "#d9534f") +
    `<text x="${w - 120}" y="14" font-size="12" fill="#2a7ae2">P50</text>` +
    `<text x="${w - 80}" y="14" font-size="12" fill="#d9534f">P90</text>`;
}

function show(data) {
  const lat = data.latency;
  const v2v = lat.stages.voice_to_voice;
  $("v2v-p90").textContent = v2v.p90 === null ? "-" : `${ms(v2v.p90)} ms`;
  $("turns-per-s").textContent = lat.turns_per_s.toFixed(2);
  $("open-sessions").textContent = lat.open_sessions;
  $("turns").textContent = lat.turns;
  rows(
    $("stages").tBodies[0],
    STAGES.map(([key, label]) => {
      const s = lat.stages[key];
      return [label, s.count, ms(s.p50), ms(s.p90), ms(s.p95), ms(s.p99)];
    }),
  );
  rows(
    $("replicas").tBodies[0],
    Object.entries(data.replicas).map(([name, states]) => [
      name,
      Object.entries(states).map(([state, n]) => `${n} ${state.toLowerCase()}`).join(", "),
    ]),
  );
  rows(
    $("cache").tBodies[0],
    Object.entries(data.cache).map(([ns, c]) => [
      ns, c.hits, c.misses, c.hit_rate === null ? "-" : `${Math.round(c.hit_rate * 100)}%`,
    ]),
  );
  history.push({ p50: v2v.p50, p90: v2v.p90 });
  if (history.length > HISTORY) history.shift();
  trend();
}

async function poll() {
  const key = $("apikey").value.trim();
  try {
    const response = await fetch("/v1/metrics/dashboard", {
      headers: key ? { Authorization: "Bearer " + key } : {},
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    show(body);
    $("status").textContent = "live";
    $("status").className = "status live";
  } catch (e) {
    $("status").textContent = "error: " + e.message;
    $("status").className = "status error";
  }
}

poll();
setInterval(poll, 2000);
