"""Streamlit page sections for advisor_app.py. They wire widgets to advisor/, estimators/ and tuners/."""
