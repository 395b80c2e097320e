"""charrnn's web app: everything that exists only for the Gradio page (app.py builds the page from these).

The library (charrnn/) never imports this package.
"""
