"""charrnn's web app: generate with a temperature slider, fine-tune on an uploaded text.

Layout and wiring only. The handlers live in charrnn/handlers.py, charrnn/inspect_views.py and
charrnn/compare_views.py (plain functions over the engine, tested without a server), every limit in charrnn/limits.py,
and the input components that refuse bad values in charrnn/components.py.
One function per tab or box, each called from build_app().
"""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from charrnn import components as ui
from charrnn import i18n, limits
from charrnn.beam import MAX_BEAM_WIDTH
from charrnn.compare_views import CSS as COMPARE_CSS
from charrnn.compare_views import MAX_HUB_IDS_CHARS, CompareViews
from charrnn.handlers import FOLD_CHOICES, GENERATE_MODES, SCRATCH, STOP_CHOICES, Studio, close_session
from charrnn.inspect_views import CSS, JS_ON_LOAD, STATES, InsightViews, pick_branch, pick_position, undo_branch
from charrnn.jobs import limit_malloc_arenas
from charrnn.session import Sessions

EXAMPLE_PROMPTS = i18n.ENGLISH_EXAMPLES
TEMPERATURE_HELP = i18n.TEMPERATURE_HELP
t = i18n.t  # a page text by key, shown in the browser's language


@dataclass
class UI:
    """The components one tab exposes to the others (another tab's events may read or update them)."""

    parts: dict[str, gr.components.Component] = field(default_factory=dict)

    def __getattr__(self, name: str):
        try:
            return self.parts[name]
        except KeyError:
            raise AttributeError(name) from None


def top_k_and_top_p() -> tuple[gr.components.Component, gr.components.Component]:
    """The two filters every sampling view offers under Advanced."""
    top_k = ui.Slider(0, 100, value=0, step=1, label="Top-k",
                      info=t("top_k_info"))
    top_p = ui.Slider(0.05, 1.0, value=1.0, step=0.05, label=t("top_p"),
                      info=t("top_p_info"))
    return top_k, top_p


def stop_and_mode() -> tuple[gr.components.Component, ...]:
    """Generate's Stop at, Minimum length, Mode and Beam width (under Advanced)."""
    stop_at = ui.Dropdown(list(STOP_CHOICES), value="the length", label=t("stop_at"), allow_custom_value=True,
                          info=t("stop_at_info"))
    min_length = ui.Number(value=0, precision=0, minimum=0, maximum=limits.MAX_GENERATE_CHARS,
                           label=t("min_length"), info=t("min_length_info"))
    mode = ui.Radio(list(GENERATE_MODES), value="sample", label=t("mode"),
                    info=t("mode_info"))
    beam_width = ui.Slider(1, MAX_BEAM_WIDTH, value=8, step=1, label=t("beam_width"),
                           info=t("beam_width_info"))
    return stop_at, min_length, mode, beam_width


def view_with_data(name: str) -> tuple[gr.HTML, gr.JSON]:
    """A Compare & score view: its HTML (#NAME-view) and, folded below it, the same as data (#NAME-data)."""
    view = gr.HTML(t(f"{name}_view"), css_template=CSS + COMPARE_CSS, js_on_load=JS_ON_LOAD, elem_id=f"{name}-view")
    with gr.Accordion(t("as_data"), open=False):
        data = gr.JSON(elem_id=f"{name}-data")
    return view, data


def build_generate_tab(studio: Studio, views: InsightViews, session: gr.State) -> UI:
    default = studio.default_model()
    with gr.Tab(t("tab_generate"), id="generate"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = ui.Textbox(label=t("seed_prompt"), lines=3, max_length=limits.MAX_TEXT_CHARS,
                                    placeholder=t("seed_prompt_placeholder"), value="Once upon a time")
                # Openings that suit the picked model (Chinese ones for a Chinese model); a click fills the prompt.
                examples = gr.Dataset(components=[prompt], samples=studio.example_samples(default),
                                      label=t("example_prompts"), elem_id="example-prompts")
                model = ui.Dropdown(studio.model_choices(), value=default, label=t("model"), allow_custom_value=True,
                                    info=t("model_info"))
                hub_repo_id = ui.Textbox(label=t("hub_repo_id"), placeholder="owner/name", max_lines=1,
                                         max_length=limits.MAX_NAME_CHARS,
                                         info=t("hub_repo_id_info"))
                temperature = ui.Slider(0, 2, value=0.8, step=0.05, label=t("temperature"), info=t("temperature_info"),
                                        elem_id="temperature")
                length = ui.Slider(1, limits.MAX_GENERATE_CHARS, value=limits.DEFAULT_GENERATE_CHARS, step=1,
                                   label=t("length"))
                seed = ui.Textbox(label=t("random_seed"), placeholder=t("seed_placeholder"), max_lines=1,
                                  max_length=limits.MAX_NAME_CHARS,
                                  info=t("seed_info"))
                with gr.Accordion(t("advanced"), open=False):
                    top_k, top_p = top_k_and_top_p()
                    stop_at, min_length, mode, beam_width = stop_and_mode()
                with gr.Row():
                    generate_btn = gr.Button(t("generate"), variant="primary")
                    stop_btn = gr.Button(t("stop"), variant="stop")
            with gr.Column(scale=3):
                output = ui.Textbox(label=t("generated_text"), lines=20, max_lines=40, max_length=limits.MAX_VIEW_CHARS,
                                    buttons=["copy"], elem_id="generated")
                seed_used = gr.Textbox(label=t("seed_used"), interactive=False, max_lines=1, elem_id="seed-used")
                undo = gr.Button(t("undo_branch"), size="sm", interactive=False, elem_id="undo-branch")
                insight = build_inspect_views(views, session, prompt, output, model, hub_repo_id, length, seed, top_k,
                                              top_p)
        inputs = [prompt, temperature, length, seed, model, hub_repo_id, top_k, top_p, session, stop_at, min_length,
                  mode, beam_width]
        run = generate_btn.click(studio.generate, inputs, [output, seed_used], api_name="generate",
                                 concurrency_limit=limits.GENERATE_CONCURRENCY, concurrency_id="generate")
        submit = prompt.submit(studio.generate, inputs, [output, seed_used], api_name="generate_on_enter",
                               concurrency_id="generate")
        # A click on an alternative in the Inspect view keeps the text for Undo, then writes on from there.
        history = gr.State([])
        branch_in = [prompt, output, insight.branch_position, insight.branch_char, temperature, length, seed, model,
                     hub_repo_id, top_k, top_p, session]
        inspect_in = [prompt, output, model, hub_repo_id, session]
        branch = insight.view.select(
            pick_branch, [output, history], [insight.branch_position, insight.branch_char, history, undo, insight.why],
            api_visibility="private").success(studio.branch, branch_in, [output, seed_used], api_name="branch",
                                              concurrency_id="generate")
        branch.success(views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
                       concurrency_id="generate")  # the view again, for the new text
        undo.click(undo_branch, [history], [output, history, undo], api_visibility="private").success(
            views.inspect, inspect_in, [insight.view, insight.data], api_visibility="private",
            concurrency_id="generate")
        stop_btn.click(None, None, None, cancels=[run, submit, branch], api_name="stop_generate")
        examples.click(lambda sample: sample[0], [examples], [prompt], api_visibility="private")  # the page only
        model.change(studio.example_update, [model, session], [examples], api_visibility="private",
                     show_progress="hidden")
    return UI(dict(prompt=prompt, model=model, hub_repo_id=hub_repo_id, temperature=temperature, length=length,
                   seed=seed, top_k=top_k, top_p=top_p, output=output, seed_used=seed_used, generate=generate_btn,
                   stop=stop_btn))


def build_push_to_hub(studio: Studio, session: gr.State, model: gr.components.Component) -> UI:
    """The "Push to Hub" box under a training run: upload one of this session's models.

    The token comes from the password box, or from the visitor's Hugging Face sign-in on a
    Space with `hf_oauth: true`, and goes straight into the one upload call: it is not stored,
    logged or shown back, and the box is emptied after a push.
    """
    signed_in = bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))  # what hf_oauth sets on a Space
    with gr.Accordion(t("push_title"), open=False, elem_id="push-to-hub"):
        gr.Markdown(t("push_help"))
        if signed_in:
            gr.LoginButton()
        repo = ui.Textbox(label=t("repo"), placeholder="you/char-rnn-poems", max_lines=1,
                          max_length=limits.MAX_NAME_CHARS, elem_id="push-repo")
        token = ui.Textbox(label=t("token_signed_in" if signed_in else "token"),
                           type="password", placeholder="hf_…", max_lines=1, max_length=limits.MAX_NAME_CHARS,
                           elem_id="push-token", info=t("token_info"))
        private = ui.Checkbox(True, label=t("private_repo"))
        button = gr.Button(t("push_button"), elem_id="push-button")
        result = gr.Markdown(elem_id="push-result")
    button.click(studio.push, [model, repo, token, private, session], [result, token], api_name="push",
                 concurrency_limit=2)
    return UI(dict(repo=repo, token=token, private=private, push=button, result=result))


def build_train_tab(studio: Studio, session: gr.State, generate: UI) -> UI:
    default = studio.default_model()
    with gr.Tab(t("tab_train"), id="train"):
        with gr.Row():
            with gr.Column(scale=2):
                upload = ui.File(label=t("training_text"), file_types=[".txt"], file_count="single",
                                 elem_id="upload")
                upload_info = gr.Markdown(elem_id="upload-info")
                base = ui.Dropdown(studio.base_choices(), value=default or SCRATCH, label=t("start_from"),
                                   allow_custom_value=True,
                                   info=t("start_from_info"))
                size = ui.Dropdown(list(limits.SIZE_PRESETS), value=limits.DEFAULT_SIZE_PRESET,
                                   label=t("model_size"))
                minutes = ui.Slider(limits.MIN_TIME_BUDGET_MIN, limits.MAX_TIME_BUDGET_MIN,
                                    value=limits.DEFAULT_TIME_BUDGET_MIN, step=1, label=t("time_budget"),
                                    info=t("time_budget_info"))
                fold = ui.Radio(list(FOLD_CHOICES), value=FOLD_CHOICES[0], label=t("ascii_folding"),
                                info=t("ascii_folding_info"))
                with gr.Accordion(t("advanced"), open=False, elem_id="train-advanced"):
                    lr = ui.Number(0, label=t("learning_rate"), minimum=0, maximum=1)
                    max_steps = ui.Number(0, label=t("max_steps"),
                                          minimum=0, precision=0)
                with gr.Row():
                    start = gr.Button(t("start_training"), variant="primary")
                    stop = gr.Button(t("stop"), variant="stop")
            with gr.Column(scale=3):
                status = gr.Markdown(t("train_status"),
                                     elem_id="train-status")
                plot = gr.LinePlot(None, x="step", y="loss", color="curve", title=t("loss_title"),
                                   x_title="step", y_title="loss", height=300, elem_id="loss-plot")
                sample = gr.Textbox(label=t("latest_sample"), lines=6, interactive=False, elem_id="train-sample")
                download = gr.DownloadButton(t("download"), visible=False, elem_id="download")
                build_push_to_hub(studio, session, generate.model)
        read_inputs = [upload, base, fold, session]
        upload.upload(studio.inspect_upload, read_inputs, upload_info, api_name="read_upload").then(
            studio.suggest_base, [upload, base, session], base, api_name="suggest_base")  # its change reports again
        base.change(studio.inspect_upload, read_inputs, upload_info, api_name="read_upload_base",
                    show_progress="hidden")
        fold.change(studio.inspect_upload, read_inputs, upload_info, api_name="read_upload_fold",
                    show_progress="hidden")
        upload.clear(lambda: "", None, upload_info, api_name="clear_upload")
        start.click(studio.train, [upload, base, size, minutes, fold, lr, max_steps, session],
                    [status, plot, sample, generate.model, base, download, session], api_name="train",
                    # runs wait in the handler's own line
                    concurrency_limit=None, concurrency_id="train", show_progress_on=[status])
        stop.click(studio.stop_training, [session], [status], api_name="stop_training", queue=False)
    return UI(dict(upload=upload, upload_info=upload_info, base=base, size=size, minutes=minutes, fold=fold, lr=lr,
                   max_steps=max_steps, start=start, stop=stop, status=status, plot=plot, sample=sample,
                   download=download))


# --- seeing inside the model -------------------------------------------------------------------------

NEURON_EXAMPLE = (
    'The old woman opened the door and looked out into the snow.\n'
    '"Who is there?" she asked. "It is only me," said the little boy, "and I am cold."\n\n'
    'She let him in, and they sat by the fire until morning. "Tell me a story," he begged,\n'
    'and so she told him about the king who had three daughters.\n'
)


def build_inspect_views(views: InsightViews, session: gr.State, prompt, output, model, hub_repo_id, length, seed, top_k,
                        top_p) -> UI:
    """Under the generated text: confidence colouring with alternatives (a click explains a character, or branches
    on an alternative), temperatures side by side, originality."""
    with gr.Accordion(t("insight"), open=True, elem_id="insight"):
        with gr.Row():
            inspect = gr.Button(t("inspect"), size="sm", elem_id="inspect-btn")
            sweep = gr.Button(t("sweep"), size="sm", elem_id="sweep-btn")
            original = gr.Button(t("originality"), size="sm", elem_id="originality-btn")
        view = gr.HTML(t("insight_help"),
                       css_template=CSS, js_on_load=JS_ON_LOAD, elem_id="insight-view")
        why = gr.HTML("", css_template=CSS, js_on_load=JS_ON_LOAD, elem_id="influence-view")  # "Why this character?"
        # Filled from the Inspect view's clicks (see inspect_views.JS_ON_LOAD); the API's /influence and /branch inputs.
        why_position = ui.Number(None, label="position", visible=False)
        branch_position = ui.Number(None, label="position", visible=False)
        branch_char = ui.Textbox(label="alternative", visible=False, max_length=limits.MAX_NAME_CHARS)
        with gr.Accordion(t("as_data"), open=False):
            data = gr.JSON(elem_id="insight-data")
            why_data = gr.JSON(elem_id="influence-data")
    model_in = [model, hub_repo_id, session]
    view.click(pick_position, None, [why_position], api_visibility="private").success(
        views.influence, [prompt, output, why_position, *model_in], [why, why_data], api_name="influence",
        concurrency_id="generate")
    inspect.click(views.inspect, [prompt, output, *model_in], [view, data], api_name="inspect",
                  concurrency_id="generate")
    sweep.click(views.temperatures, [prompt, length, seed, model, hub_repo_id, top_k, top_p, session], [view, data],
                api_name="temperatures", concurrency_id="generate")
    original.click(views.originality, [prompt, output, *model_in], [view, data], api_name="originality",
                   concurrency_id="generate")
    return UI(dict(inspect=inspect, sweep=sweep, originality=original, view=view, data=data, why=why,
                   why_data=why_data, branch_position=branch_position, branch_char=branch_char))


def build_neurons_tab(views: InsightViews, session: gr.State, generate: UI) -> UI:
    """Colour a text by one LSTM cell, and find the cells that track quotes, line position and the like."""
    with gr.Tab(t("tab_neurons"), id="neurons"):
        gr.Markdown(t("neurons_help"))
        with gr.Row():
            with gr.Column(scale=2):
                text = ui.Textbox(NEURON_EXAMPLE, label=t("text"), lines=10, max_lines=20,
                                  max_length=limits.MAX_TEXT_CHARS, elem_id="neuron-text")
                use_last = gr.Button(t("use_last"), size="sm")
                with gr.Row():
                    layer = ui.Number(1, label=t("layer"), precision=0, minimum=1, elem_id="neuron-layer",
                                      info=t("layer_info"))
                    unit = ui.Number(0, label=t("unit"), precision=0, minimum=0, elem_id="neuron-unit",
                                     info=t("unit_info"))
                state = ui.Radio(list(STATES), value=next(iter(STATES)), label=t("state"),
                                 info=t("state_info"))
                with gr.Row():
                    show = gr.Button(t("colour_by_cell"), variant="primary", elem_id="neuron-show")
                    find = gr.Button(t("find_cells"), elem_id="neuron-find")
            with gr.Column(scale=3):
                view = gr.HTML(css_template=CSS, js_on_load=JS_ON_LOAD, elem_id="neuron-view")
                cells = gr.Dataframe(headers=["feature", "rank", "layer", "unit", "state", "r"], interactive=False,
                                     label=t("cells"),
                                     elem_id="cells")
                how = gr.Markdown(elem_id="cells-how")
                with gr.Accordion(t("as_data"), open=False):
                    data = gr.JSON()
    model_in = [generate.model, generate.hub_repo_id, session]
    use_last.click(None, generate.output, text, js="(generated) => generated")
    show.click(views.neurons, [text, layer, unit, state, *model_in], [view, data], api_name="neurons",
               concurrency_id="generate")
    find.click(views.find_cells, [text, *model_in], [cells, how], api_name="find_cells", concurrency_id="generate")
    cells.select(views.pick_cell, [cells], [layer, unit, state], api_name="pick_cell").then(
        views.neurons, [text, layer, unit, state, *model_in], [view, data], api_name="neurons_of_picked_cell",
        concurrency_id="generate")
    return UI(dict(text=text, layer=layer, unit=unit, state=state, show=show, find=find, view=view, cells=cells,
                   how=how, data=data))


def build_compare_tab(studio: Studio, session: gr.State) -> UI:
    """Two to four models side by side on one prompt and seed, or scored on one text."""
    views = CompareViews(studio)
    shipped = list(studio.shipped())
    with gr.Tab(t("tab_compare"), id="compare") as tab:
        gr.Markdown(t("compare_help"))
        with gr.Row():
            models = ui.Dropdown(studio.model_choices(), value=shipped[:2], multiselect=True,
                                 max_choices=limits.MAX_COMPARE_MODELS, label=t("models"), allow_custom_value=True,
                                 elem_id="compare-models",
                                 info=t("models_info"))
            hub_repo_ids = ui.Textbox(label=t("hub_repo_ids"), placeholder="owner/name, owner/other", max_lines=1,
                                      max_length=MAX_HUB_IDS_CHARS, elem_id="compare-hub-ids",
                                      info=t("hub_repo_ids_info"))
        gr.Markdown(t("compare_heading"))
        with gr.Row():
            with gr.Column(scale=2):
                prompt = ui.Textbox(label=t("prompt"), lines=3, max_length=limits.MAX_TEXT_CHARS,
                                    value="Once upon a time", elem_id="compare-prompt")
                temperature = ui.Slider(0, 2, value=0.8, step=0.05, label=t("temperature"), info=t("temperature_info"))
                length = ui.Slider(1, limits.MAX_GENERATE_CHARS, value=300, step=1,
                                   label=t("compare_length"))
                seed = ui.Textbox(label=t("compare_seed"), placeholder=t("seed_placeholder"), max_lines=1,
                                  max_length=limits.MAX_NAME_CHARS, elem_id="compare-seed",
                                  info=t("compare_seed_info"))
                with gr.Accordion(t("advanced"), open=False):
                    top_k, top_p = top_k_and_top_p()
                with gr.Row():
                    compare_btn = gr.Button(t("compare"), variant="primary", elem_id="compare-btn")
                    stop_btn = gr.Button(t("stop"), variant="stop", elem_id="compare-stop")
            with gr.Column(scale=3):
                compare_view, compare_data = view_with_data("compare")
        gr.Markdown(t("score_heading"))
        with gr.Row():
            with gr.Column(scale=2):
                text = ui.Textbox(label=t("score_text"), lines=8, max_lines=20, max_length=limits.MAX_TEXT_CHARS,
                                  elem_id="score-text", placeholder=t("score_placeholder"))
                upload = ui.File(label=t("score_upload"), file_types=[".txt"],
                                 file_count="single", elem_id="score-upload")
                score_btn = gr.Button(t("score"), variant="primary", elem_id="score-btn")
            with gr.Column(scale=3):
                score_view, score_data = view_with_data("score")
    tab.select(views.picker_update, [session], [models], api_name="compare_models", show_progress="hidden")
    run = compare_btn.click(views.compare, [prompt, temperature, length, seed, models, hub_repo_ids, top_k, top_p,
                                            session], [compare_view, compare_data], api_name="compare",
                            concurrency_id="generate")
    stop_btn.click(None, None, None, cancels=[run], api_name="stop_compare")
    score_btn.click(views.score, [text, upload, models, hub_repo_ids, session], [score_view, score_data],
                    api_name="score", concurrency_id="generate")
    return UI(dict(models=models, hub_repo_ids=hub_repo_ids, prompt=prompt, temperature=temperature, length=length,
                   seed=seed, top_k=top_k, top_p=top_p, compare=compare_btn, stop=stop_btn, compare_view=compare_view,
                   compare_data=compare_data, text=text, upload=upload, score=score_btn, score_view=score_view,
                   score_data=score_data))


def build_app(checkpoints: str | Path | None = None, sessions: Sessions | None = None) -> gr.Blocks:
    """The whole app; checkpoints points at another folder of shipped models (tests use tiny ones)."""
    studio = Studio(checkpoints, sessions)
    with ui.Page(title="charrnn", delete_cache=(3600, limits.SESSION_TTL_S)) as demo:
        gr.Markdown(t("intro"))
        session = gr.State(None, time_to_live=limits.SESSION_TTL_S, delete_callback=close_session)
        views = InsightViews(studio)
        generate = build_generate_tab(studio, views, session)
        train = build_train_tab(studio, session, generate)
        build_neurons_tab(views, session, generate)
        build_compare_tab(studio, session)
        demo.load(studio.picker_updates, [session], [generate.model, train.base], api_name="models")
        demo.unload(studio.end_session)
    # Events sharing a concurrency_id run under the lowest limit any of them sets, so the default
    # is the generation limit: every viewing event joins "generate". Training runs are all let in and
    # wait in the app's own line (jobs.TrainingLine), where Stop reaches them.
    demo.page_i18n = i18n.build()  # launch() translates the page with it
    demo.queue(max_size=limits.QUEUE_MAX_SIZE, default_concurrency_limit=limits.GENERATE_CONCURRENCY)
    studio.forget_state = demo.forget_session
    demo.studio = studio  # type: ignore[attr-defined]
    return demo


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(description="Serve the charrnn web app.")
    parser.add_argument("--host", default=env.get("CHARRNN_HOST") or env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="interface to listen on (env CHARRNN_HOST; 0.0.0.0 for all)")
    port = int(env.get("CHARRNN_PORT") or env.get("GRADIO_SERVER_PORT") or 7860)
    parser.add_argument("--port", type=int, default=port, help="port (env CHARRNN_PORT)")
    share = env.get("CHARRNN_SHARE", "").lower() in ("1", "true", "yes")
    parser.add_argument("--share", action="store_true", default=share,
                        help="also serve through a public gradio.live link (env CHARRNN_SHARE=1)")
    parser.add_argument("--checkpoints", default=None,
                        help="folder of shipped models (env CHARRNN_CHECKPOINTS; default checkpoints/)")
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # before the threads that generate and train start
    demo = build_app(args.checkpoints)
    # SIGTERM (a Space restart, docker stop) stops the server the way Ctrl-C does, so the clean-up below runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                    max_file_size=limits.MAX_UPLOAD_BYTES, max_threads=limits.SERVER_THREADS)
    except KeyboardInterrupt:
        pass
    finally:
        demo.studio.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
