// Run in my browser: the Generate tab's settings run by charrnn-web.js in this page (the js_on_load of the
// runtime's gr.HTML, whose value is the state browser_runtime.runtime_state sends: the model folder's address,
// the runtime's address, the Stop at choices and the messages). The text streams into the Generate box.
(() => {
  const root = new URL(".", (window.gradio_config && window.gradio_config.root ? window.gradio_config.root + "/"
    : location.href));
  const address = (relative) => new URL(relative, root).href;
  const models = new Map();  // folder address -> Promise<BrowserModel>, fetched once per page
  let run = null;
  const note = (text) => { props.value = {...props.value, note: text}; };

  function model(state) {
    const url = address(state.url);
    if (!models.has(url)) {
      models.set(url, import(address(state.runtime)).then(({BrowserModel}) => BrowserModel.load(url))
        .catch((err) => { models.delete(url); throw err; }));
    }
    return models.get(url);
  }

  function stopStrings(stopAt, state) {
    if (stopAt in state.stops) return state.stops[stopAt];
    const escapes = {n: "\n", t: "\t", "\\": "\\"};
    return stopAt ? [String(stopAt).replace(/\\([nt\\])/g, (_, c) => escapes[c])] : [];
  }

  // Writes into the Generate box; resolves to [text, seed used] for the box and the seed field.
  async function generate(settings, state) {
    const unchanged = [{__type__: "update"}, {__type__: "update"}];
    if (settings.mode === "beam search") { note(state.texts.browser_beam); return unchanged; }
    if (!state.url) { note(state.note); return unchanged; }
    const box = document.querySelector("#generated textarea");
    try {
      note(state.texts.browser_loading);
      const loaded = await model(state);
      note(state.note);
      run?.stop();
      run = loaded.generate({prompt: settings.prompt, temperature: settings.temperature, length: settings.length,
                             topK: settings.topK, topP: settings.topP, seed: settings.seed,
                             stop: stopStrings(settings.stopAt, state), minLength: settings.minLength}, box);
      const done = await run.done;
      return [done.prompt + done.text, String(done.seed)];
    } catch (err) {
      note(`${state.texts.browser_failed} ${err.message || err}`);
      return unchanged;
    }
  }

  // Enter in the prompt box (the server's generate_on_enter) runs in the page too while the switch is on.
  window.addEventListener("keydown", (event) => {
    const prompt = document.querySelector("#prompt textarea");
    if (!props.value.on || event.key !== "Enter" || event.target !== prompt) return;
    if (prompt.rows > 1 && !event.shiftKey) return;  // a newline in the prompt
    event.preventDefault();
    event.stopImmediatePropagation();
    document.querySelector("#browser-generate-btn")?.click();
  }, true);

  window.charrnnBrowser = {generate, stop: () => run?.stop()};
})();
