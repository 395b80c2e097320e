"""charrnn's web app: the page built from its four tabs, and its launch.

Each tab is a module of webapp/ holding its layout, its event wiring and its handlers
(generate_tab, train_tab, neurons_tab, compare_tab); what they share is beside them (the Studio's
model lookup in webapp/models.py, every limit in webapp/limits.py, the input components that refuse
bad values in webapp/components.py). This file only puts the tabs on one page and serves it.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
from pathlib import Path

import gradio as gr

from charrnn.memory import tune_malloc
from webapp import compare_tab, generate_tab, i18n, limits, neurons_tab, train_tab
from webapp import components as ui
from webapp.models import Studio, close_session
from webapp.session import Sessions


def build_app(checkpoints: str | Path | None = None, sessions: Sessions | None = None) -> gr.Blocks:
    """The whole app; checkpoints points at another folder of shipped models (tests use tiny ones)."""
    studio = Studio(checkpoints, sessions)
    with ui.Page(title="charrnn", delete_cache=(3600, limits.SESSION_TTL_S)) as demo:
        gr.Markdown(i18n.t("intro"))
        session = gr.State(None, time_to_live=limits.SESSION_TTL_S, delete_callback=close_session)
        generate = generate_tab.build(studio, session)
        train = train_tab.build(studio, session, generate)
        neurons_tab.build(studio, session, generate)
        compare_tab.build(studio, session)
        # The pickers keep their values meanwhile (no progress overlay): the page is never blank while this runs.
        demo.load(studio.picker_updates, [session], [generate.model, train.base], api_name="models",
                  show_progress="hidden")
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
    tune_malloc()  # before the threads that generate and train start
    demo = build_app(args.checkpoints)
    # What start-up made lives as long as the app: the collection after each big job skips it (gc.freeze), so that
    # collection looks at the job's objects only, not the few hundred thousand of torch, Gradio and the page.
    gc.freeze()
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
