"""The advisor: questionnaire, rules, ranking and the command line. No torch, no streamlit."""
