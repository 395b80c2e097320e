// The page's side of charrnn in the browser: a `charrnn export --format web` folder run in a Web Worker
// (charrnn-worker.js), its text streamed into an element.
//
//   import {BrowserModel} from "./charrnn-web.js";
//   const model = await BrowserModel.load("model/");  // the folder holding charrnn.json and the weights
//   const run = model.generate({prompt, temperature, length, topK, topP, seed, stop, minLength}, element);
//   run.stop();                                       // or let it finish
//   const {text, prompt, seed, stoppedAt, chars, seconds, firstCharMs} = await run.done;
//
// The element shows the prompt as the model read it (in a <span class="prompt">) and then the text as it is
// written; a <textarea> or <input> gets them as its value instead, with an "input" event at each change, so a
// framework bound to it (a Gradio Textbox) sees the text. The element's data-done is "false" while a generation
// runs and "true" once it has ended, finished or stopped.
// Settings left out take the server's defaults: temperature 0.8, length 500, top-k and top-p off, a drawn seed.

export class BrowserModel {
  constructor(worker, info) {
    this.worker = worker;
    this.info = info;  // {model, kernel, vocabSize, cell, layers, hidden, dtype, bytes}
    this.nextId = 1;
    this.runs = new Map();
    worker.onmessage = (event) => this.runs.get(event.data.id)?.receive(event.data);
  }

  // Starts a worker and loads the model from base (a folder's URL, relative to the page). kernel "js" forces
  // plain JavaScript products instead of WebAssembly SIMD (for comparison; used anyway where SIMD is missing).
  static load(base, {kernel} = {}) {
    const worker = new Worker(new URL("charrnn-worker.js", import.meta.url));
    const folder = new URL(base.endsWith("/") ? base : `${base}/`, document.baseURI).href;
    return new Promise((resolve, reject) => {
      worker.onmessage = (event) => {
        if (event.data.type === "loaded") resolve(new BrowserModel(worker, event.data.info));
        else if (event.data.type === "error") { worker.terminate(); reject(new Error(event.data.message)); }
      };
      worker.onerror = (event) => { worker.terminate(); reject(new Error(event.message || "the worker failed")); };
      worker.postMessage({type: "load", base: folder, kernel});
    });
  }

  // Starts a generation (stopping the one before, if any) that writes into element; returns a Generation.
  generate(options, element, {onText} = {}) {
    for (const run of this.runs.values()) run.stop();
    const run = new Generation(this, this.nextId++, element, onText);
    this.runs.set(run.id, run);
    this.worker.postMessage({type: "generate", id: run.id, ...options, stop: [].concat(options.stop || [])});
    return run;
  }

  close() {
    this.worker.terminate();
  }
}

class Generation {
  constructor(model, id, element, onText) {
    this.model = model;
    this.id = id;
    this.element = element;
    this.onText = onText;
    this.started = performance.now();
    this.firstCharMs = null;
    this.text = "";
    this.done = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
    this.field = element instanceof HTMLTextAreaElement || element instanceof HTMLInputElement;
    element.dataset.done = "false";
    this.show("", true);
  }

  // Writes text after what the element shows (or in place of it, with restart).
  show(text, restart = false) {
    const element = this.element;
    if (this.field) {
      element.value = restart ? text : element.value + text;
      element.dispatchEvent(new Event("input", {bubbles: true}));
    } else if (restart) {
      const shown = document.createElement("span");
      shown.className = "prompt";
      shown.textContent = text;
      this.written = document.createTextNode("");
      element.replaceChildren(...(text ? [shown] : []), this.written);
    } else {
      this.written.appendData(text);
    }
  }

  stop() {
    this.model.worker.postMessage({type: "stop", id: this.id});
  }

  receive(msg) {
    if (msg.type === "started") {
      this.prompt = msg.prompt;
      this.seed = msg.seed;
      this.show(msg.prompt, true);
    } else if (msg.type === "text") {
      this.firstCharMs ??= performance.now() - this.started;
      this.text += msg.text;
      this.show(msg.text);
      this.onText?.(msg.text, this);
    } else if (msg.type === "done" || msg.type === "error") {
      this.model.runs.delete(this.id);
      this.element.dataset.done = "true";
      if (msg.type === "error") this.reject(new Error(msg.message));
      else this.resolve({text: this.text, prompt: this.prompt, seed: this.seed, stoppedAt: msg.stoppedAt,
                         stopped: msg.stopped, chars: msg.chars, seconds: msg.seconds, firstCharMs: this.firstCharMs});
    }
  }
}

// The settings a page's address asks for: ?prompt=...&temperature=0&length=200&top_k=&top_p=&seed=1&stop=...&run=1
export function settingsFromAddress(search = location.search) {
  const query = new URLSearchParams(search);
  const settings = {};
  for (const [key, name] of [["prompt", "prompt"], ["temperature", "temperature"], ["length", "length"],
                             ["top_k", "topK"], ["top_p", "topP"], ["seed", "seed"]]) {
    if (query.has(key)) settings[name] = query.get(key);
  }
  settings.stop = query.getAll("stop").filter((s) => s);
  return {settings, run: query.get("run") === "1"};
}

// The address that repeats a generation: the page's own, with the settings in its query.
export function addressFor(settings, href = location.href) {
  const url = new URL(href);
  url.search = "";
  for (const [name, key] of [["prompt", "prompt"], ["temperature", "temperature"], ["length", "length"],
                             ["topK", "top_k"], ["topP", "top_p"], ["seed", "seed"]]) {
    if (settings[name] !== undefined && settings[name] !== "") url.searchParams.set(key, settings[name]);
  }
  for (const stop of settings.stop || []) url.searchParams.append("stop", stop);
  return url.href;
}
