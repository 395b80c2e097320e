// A charrnn model generating text in a Web Worker, so the page stays responsive while it runs.
//
// The weights come from a `charrnn export --format web` folder (charrnn.json and one flat fp16 or fp32 file);
// the arithmetic is fp32: matrix-vector products in WebAssembly SIMD (matvec.wasm), gates and sampling here.
// Sampling follows charrnn.sampling.draw_rows: the unknown symbol is never written, temperature 0 is the
// likeliest character, top-k then top-p mask the logits, and a draw is the argmax of logits / temperature plus
// Gumbel noise. The noise is a hash of (seed, position, character), so a seed writes the same text every time.
//
// Messages in:  {type: "load", base, kernel}  base: the folder's URL (ending in /); kernel "js" forces plain
//                                             JavaScript products (used anyway where WebAssembly SIMD is missing)
//               {type: "generate", id, prompt, temperature, length, topK, topP, seed, stop, minLength}
//               {type: "stop", id}
// Messages out: {type: "loaded", info} | {type: "started", id, prompt, seed} | {type: "text", id, text} (chunks)
//               {type: "done", id, stoppedAt, stopped, chars, seconds} | {type: "error", id, message}
"use strict";

const FLUSH_MS = 30;  // how often written text is sent to the page
const YIELD_MS = 15;  // the longest the worker computes before it reads its messages (a Stop)
const LANES = 16;     // matvec.wasm reads rows in blocks of 16 floats: rows are padded to this

let net = null;       // the loaded model (loadModel)
let running = null;   // {id, stopped} of the generation in progress
let queue = Promise.resolve();  // generations run one after another: a new one stops the one before

const report = (id) => (err) => self.postMessage({type: "error", id, message: String(err.message || err)});

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === "load") {
    queue = queue.then(() => loadModel(msg.base, msg.kernel))
      .then((info) => self.postMessage({type: "loaded", info}), report(undefined));
  } else if (msg.type === "generate") {
    if (running) running.stopped = true;
    queue = queue.then(() => generate(msg)).catch(report(msg.id));
  } else if (msg.type === "stop" && running && running.id === msg.id) {
    running.stopped = true;
  }
};

// --- loading ------------------------------------------------------------------------------------

async function fetchOk(url, init) {
  const response = await fetch(url, init);
  if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
  return response;
}

// The float of every fp16 bit pattern, built once: converting the weights is then one look-up each.
let halfTable = null;
function halfFloats() {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 31, frac = h & 1023;
      halfTable[h] = exp === 0 ? sign * frac * 2 ** -24
        : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
  }
  return halfTable;
}

// The weights' name holds their hash, so a copy kept by the browser is always the right one: it is kept in the
// Cache Storage where the page may use it (https, localhost), which holds files of any size for good, and
// otherwise left to the HTTP cache. Copies of the folder's other weights (an older export) are dropped.
async function fetchWeights(url) {
  const cache = self.caches ? await caches.open("charrnn-weights").catch(() => null) : null;
  const kept = cache ? await cache.match(url) : null;
  if (kept) return kept.arrayBuffer();
  const response = await fetchOk(url, {cache: "force-cache"});
  if (cache) {
    const folder = url.slice(0, url.lastIndexOf("/") + 1);
    for (const old of await cache.keys()) {
      if (old.url.startsWith(folder) && !old.url.slice(folder.length).includes("/")) await cache.delete(old);
    }
    await cache.put(url, response.clone()).catch(() => {});  // a full quota: the HTTP cache alone, then
  }
  return response.arrayBuffer();
}

async function loadModel(base, kernel) {
  const settings = await (await fetchOk(new URL("charrnn.json", base), {cache: "no-cache"})).json();
  const [raw, wasm] = await Promise.all([
    fetchWeights(new URL(settings.weights.file, base).href),
    fetchOk(new URL("matvec.wasm", self.location.href)).then((r) => r.arrayBuffer()),
  ]);
  const values = settings.dtype === "fp16" ? new Uint16Array(raw) : new Float32Array(raw);
  net = await buildNetwork(settings, values, kernel !== "js" && self.WebAssembly?.validate(wasm) ? wasm : null);
  return {model: settings.model, kernel: net.kernel, vocabSize: settings.vocab.length, cell: settings.cell,
          layers: settings.num_layers, hidden: settings.hidden_size, dtype: settings.dtype, bytes: raw.byteLength};
}

// Lays the weights out in the wasm memory (rows padded to LANES floats) with the buffers a step uses.
async function buildNetwork(settings, values, wasmBytes) {
  const H = settings.hidden_size, E = settings.embedding_dim, V = settings.vocab.length;
  const lstm = settings.cell === "lstm";
  const table = values instanceof Uint16Array ? halfFloats() : null;
  const tensors = Object.fromEntries(settings.weights.tensors.map((t) => [t.name, t]));
  const pad = (n) => Math.ceil(n / LANES) * LANES;
  const plan = [];  // [name, floats] in memory order
  let floats = 0;
  const reserve = (name, n) => { plan.push([name, floats]); const at = floats; floats += pad(n); return at; };
  const matrix = (name) => { const [rows, cols] = tensors[name].shape; return reserve(name, rows * pad(cols)); };
  const layers = [];
  for (let k = 0; k < settings.num_layers; k++) {
    const input = k === 0 ? E : H;
    if (lstm) {
      layers.push({input, w: matrix(`layer${k}.weight`), b: reserve(`layer${k}.bias`, 4 * H),
                   xh: reserve(`xh${k}`, input + H), gates: reserve(`gates${k}`, 4 * H), c: new Float32Array(H)});
    } else {
      layers.push({input, wi: matrix(`layer${k}.weight_ih`), wh: matrix(`layer${k}.weight_hh`),
                   bi: reserve(`layer${k}.bias_ih`, 3 * H), bh: reserve(`layer${k}.bias_hh`, 3 * H),
                   x: reserve(`x${k}`, input), h: reserve(`h${k}`, H),
                   gi: reserve(`gi${k}`, 3 * H), gh: reserve(`gh${k}`, 3 * H)});
    }
  }
  const head = {w: matrix("head.weight"), b: reserve("head.bias", V), x: reserve("top", H), out: reserve("logits", V)};
  const memory = wasmBytes ? new WebAssembly.Memory({initial: Math.ceil((floats * 4) / 65536) + 1}) : null;
  const f32 = memory ? new Float32Array(memory.buffer) : new Float32Array(floats);
  const matvec = wasmBytes ? (await WebAssembly.instantiate(wasmBytes, {env: {memory}})).instance.exports.matvec
    : plainMatvec(f32);
  const copy = (name, at) => {  // a tensor from the file into memory, each row padded
    const t = tensors[name], matrix = t.shape.length > 1;
    const rows = matrix ? t.shape[0] : 1, cols = matrix ? t.shape[1] : t.shape[0], stride = matrix ? pad(cols) : cols;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) {
        const v = values[t.offset + r * cols + j];
        f32[at + r * stride + j] = table ? table[v] : v;
      }
    }
  };
  for (const [name, at] of plan) if (tensors[name]) copy(name, at);
  const embedding = new Float32Array(V * E);
  const e = tensors.embedding;
  for (let i = 0; i < V * E; i++) embedding[i] = table ? table[values[e.offset + i]] : values[e.offset + i];
  const index = new Map(settings.vocab.map((ch, i) => [ch, i]));
  return {settings, H, E, V, lstm, layers, head, f32, embedding, index, matvec,
          kernel: wasmBytes ? "wasm-simd" : "js", fold: new Map(Object.entries(settings.fold || {}))};
}

// matvec.wasm's product in plain JavaScript, on the same memory and byte offsets.
function plainMatvec(f32) {
  return (w, x, y, rows, cols) => {
    w >>= 2; x >>= 2; y >>= 2;
    for (let r = 0; r < rows; r++, w += cols) {
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let k = 0; k < cols; k += 4) {
        a0 += f32[w + k] * f32[x + k]; a1 += f32[w + k + 1] * f32[x + k + 1];
        a2 += f32[w + k + 2] * f32[x + k + 2]; a3 += f32[w + k + 3] * f32[x + k + 3];
      }
      f32[y + r] += (a0 + a1) + (a2 + a3);
    }
  };
}

// --- one step -----------------------------------------------------------------------------------

const sigmoid = (x) => 1 / (1 + Math.exp(-x));

// Reads character id; returns the logits for the next one (a view of the wasm memory) when wanted.
function step(id, wantLogits) {
  const {H, E, f32, layers, head, matvec, lstm} = net;
  let input = net.embedding.subarray(id * E, id * E + E);
  for (const L of layers) {
    if (lstm) {
      f32.set(input, L.xh);
      f32.copyWithin(L.gates, L.b, L.b + 4 * H);
      matvec(L.w * 4, L.xh * 4, L.gates * 4, 4 * H, Math.ceil((L.input + H) / LANES) * LANES);
      const g = L.gates, hAt = L.xh + L.input, c = L.c;
      for (let j = 0; j < H; j++) {
        const i = sigmoid(f32[g + j]), f = sigmoid(f32[g + H + j]);
        const cell = Math.tanh(f32[g + 2 * H + j]), o = sigmoid(f32[g + 3 * H + j]);
        c[j] = f * c[j] + i * cell;
        f32[hAt + j] = o * Math.tanh(c[j]);
      }
      input = f32.subarray(hAt, hAt + H);
    } else {
      f32.set(input, L.x);
      f32.copyWithin(L.gi, L.bi, L.bi + 3 * H);
      f32.copyWithin(L.gh, L.bh, L.bh + 3 * H);
      matvec(L.wi * 4, L.x * 4, L.gi * 4, 3 * H, Math.ceil(L.input / LANES) * LANES);
      matvec(L.wh * 4, L.h * 4, L.gh * 4, 3 * H, Math.ceil(H / LANES) * LANES);
      for (let j = 0; j < H; j++) {  // torch's GRU: gates r, z, n
        const r = sigmoid(f32[L.gi + j] + f32[L.gh + j]);
        const z = sigmoid(f32[L.gi + H + j] + f32[L.gh + H + j]);
        const n = Math.tanh(f32[L.gi + 2 * H + j] + r * f32[L.gh + 2 * H + j]);
        f32[L.h + j] = (1 - z) * n + z * f32[L.h + j];
      }
      input = f32.subarray(L.h, L.h + H);
    }
  }
  if (!wantLogits) return null;
  f32.set(input, head.x);
  f32.copyWithin(head.out, head.b, head.b + net.V);
  matvec(head.w * 4, head.x * 4, head.out * 4, net.V, Math.ceil(H / LANES) * LANES);
  return f32.subarray(head.out, head.out + net.V);
}

function resetState() {
  for (const L of net.layers) {
    if (net.lstm) { net.f32.fill(0, L.xh, L.xh + L.input + net.H); L.c.fill(0); }
    else net.f32.fill(0, L.h, L.h + net.H);
  }
}

// --- prompts and drawing -----------------------------------------------------------------------

// The prompt as charrnn.sampling.prepare_prompt reads it: newlines normalised, characters the model lacks
// folded (charrnn.json's table) or dropped, only the last max_prompt_chars kept.
function preparePrompt(raw) {
  const {settings, index, fold} = net;
  const limit = settings.limits.max_prompt_chars;
  const chars = Array.from(String(raw || "").slice(-4 * limit).replace(/\r\n?/g, "\n"));
  const known = (ch) => (index.get(ch) ?? 0) !== 0;
  const out = [];
  for (const ch of chars) {
    if (ch.length === 1 && ch >= "\ud800" && ch <= "\udfff") continue;  // a lone surrogate
    if (settings.ascii_fold && fold.has(ch)) out.push(...fold.get(ch));  // a folding model folds first
    else if (known(ch)) out.push(ch);
    else if (fold.has(ch)) out.push(...fold.get(ch));  // the others fold only what they lack
  }
  return out.slice(-limit).join("");
}

// Gumbel noise for (seed, position, character): a 32-bit hash (murmur3's finaliser, chained) made uniform
// in (0, 1), then -log(-log(u)).
function mix(h) {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
function gumbel(seedLo, seedHi, position, j) {
  const bits = mix(mix(mix(mix(seedLo ^ 0x243f6a88) ^ seedHi) ^ position) ^ j);
  return -Math.log(-Math.log(((bits >>> 8) + 0.5) / 16777216));
}

// The next character's id: charrnn.sampling.draw_rows for one row.
function choose(logits, s, position) {
  const V = logits.length;
  if (s.temperature === 0) {
    let best = 1;
    for (let j = 2; j < V; j++) if (logits[j] > logits[best]) best = j;
    return best;
  }
  const scaled = new Float32Array(V);
  for (let j = 0; j < V; j++) scaled[j] = j === 0 ? -Infinity : logits[j] / s.temperature;
  if (s.topK || s.topP) maskFiltered(scaled, s);
  let best = -1, bestValue = -Infinity;
  for (let j = 1; j < V; j++) {
    if (scaled[j] === -Infinity) continue;
    const v = scaled[j] + gumbel(s.seedLo, s.seedHi, position, j);
    if (best < 0 || v > bestValue) { best = j; bestValue = v; }
  }
  return best;
}

// Top-k, then top-p (charrnn.sampling.filter_rows): characters below the threshold become -Infinity.
function maskFiltered(scaled, s) {
  const ordered = Float32Array.from(scaled).sort().reverse();
  if (s.topK) {
    const kth = ordered[s.topK - 1];
    for (let j = 0; j < scaled.length; j++) {
      if (scaled[j] < kth) scaled[j] = -Infinity;
      if (ordered[j] < kth) ordered[j] = -Infinity;
    }
  }
  if (s.topP) {
    const top = ordered[0];
    let total = 0;
    for (let j = 0; j < ordered.length; j++) total += Math.exp(ordered[j] - top);
    let before = 0, kept = 0;
    for (let j = 0; j < ordered.length; j++) {
      if (before < s.topP) kept++;
      before += Math.exp(ordered[j] - top) / total;
    }
    const threshold = ordered[kept - 1];
    for (let j = 0; j < scaled.length; j++) if (scaled[j] < threshold) scaled[j] = -Infinity;
  }
}

// --- generating ---------------------------------------------------------------------------------

// Let the worker read its messages (a Stop) between slices of work, without a timer's delay.
const channel = new MessageChannel();
const wakers = [];
channel.port1.onmessage = () => wakers.shift()();
const yieldToMessages = () => new Promise((resolve) => { wakers.push(resolve); channel.port2.postMessage(0); });

function checkedSettings(msg) {
  const limits = net.settings.limits, V = net.V;
  const number = (v, fallback) => (v === undefined || v === null || v === "" ? fallback : Number(v));
  let temperature = number(msg.temperature, 0.8);
  if (!Number.isFinite(temperature) || temperature < 0) throw new Error("temperature must be a number, 0 or more");
  temperature = temperature < 1e-3 ? 0 : Math.min(temperature, limits.max_temperature);
  const length = number(msg.length, 500);
  if (!Number.isInteger(length) || length < 0 || length > limits.max_length) {
    throw new Error(`length must be a whole number from 0 to ${limits.max_length}`);
  }
  let topK = number(msg.topK, 0);
  if (!Number.isInteger(topK) || topK < 0) throw new Error("top-k must be a whole number, 0 or more");
  topK = topK >= V ? 0 : topK;
  let topP = number(msg.topP, 1);
  if (!(topP > 0 && topP <= 1)) throw new Error("top-p must be in (0, 1]");
  topP = topP === 1 ? 0 : topP;
  const seedText = msg.seed === undefined || msg.seed === null || String(msg.seed).trim() === ""
    ? String(Math.floor(Math.random() * 2 ** 31)) : String(msg.seed).trim();
  if (!/^-?\d+$/.test(seedText)) throw new Error("seed must be a whole number");
  const seed = ((BigInt(seedText) % 2n ** 63n) + 2n ** 63n) % 2n ** 63n;  // as charrnn.sampling.resolve_seed
  const stop = [...new Set((msg.stop || []).filter((s) => s))];
  if (stop.length > limits.max_stop_strings || stop.some((s) => s.length > limits.max_stop_chars)) {
    throw new Error(`at most ${limits.max_stop_strings} stop strings of at most ${limits.max_stop_chars} characters`);
  }
  return {temperature, length, topK, topP, stop, minLength: Number(msg.minLength) || 0, seed: seed.toString(),
          seedLo: Number(seed & 0xffffffffn), seedHi: Number(seed >> 32n)};
}

async function generate(msg) {
  if (!net) throw new Error("the model is not loaded yet");
  const me = {id: msg.id, stopped: false};
  running = me;
  const s = checkedSettings(msg);
  const prompt = preparePrompt(msg.prompt);
  self.postMessage({type: "started", id: me.id, prompt, seed: s.seed});
  const started = performance.now();
  let lastYield = started, lastFlush = started, pending = "", tail = "", written = 0, stoppedAt = null;
  resetState();
  const context = Array.from(prompt || net.settings.empty_prompt);
  let logits = null;
  for (let k = 0; k < context.length && !me.stopped; k++) {
    logits = step(net.index.get(context[k]) ?? 0, k === context.length - 1);
    if (performance.now() - lastYield > YIELD_MS) { await yieldToMessages(); lastYield = performance.now(); }
  }
  const longestStop = Math.max(0, ...s.stop.map((t) => t.length));
  while (!me.stopped && written < s.length && stoppedAt === null) {
    const id = choose(logits, s, written);
    const ch = net.settings.vocab[id];
    pending += ch;
    written++;
    if (longestStop) {
      tail = (tail + ch).slice(-longestStop);
      if (written >= s.minLength) stoppedAt = s.stop.find((t) => tail.endsWith(t)) ?? null;
    }
    const now = performance.now();
    if (written === 1 || now - lastFlush > FLUSH_MS) {
      self.postMessage({type: "text", id: me.id, text: pending});
      pending = "";
      lastFlush = now;
    }
    if (written < s.length && stoppedAt === null) logits = step(id, true);
    if (now - lastYield > YIELD_MS) { await yieldToMessages(); lastYield = performance.now(); }
  }
  if (pending) self.postMessage({type: "text", id: me.id, text: pending});
  if (running === me) running = null;
  self.postMessage({type: "done", id: me.id, stoppedAt, chars: written, stopped: me.stopped,
                    seconds: (performance.now() - started) / 1000});
}
