"""``recommend``: every method ranked for a questionnaire's answers, with reasons."""
from __future__ import annotations

import json

from advisor.cli.parsing import command_parser
from advisor.formatting import format_recommendation

ANSWERS_HELP = """\
Answers file example (only task, goals, num_examples, domain_distance, model, gpu are required):
  {"task": "chat", "goals": ["style"], "num_examples": 2000, "avg_tokens_per_example": 300,
   "domain_distance": "moderate", "model": "llama-3.1-8b", "gpu": "rtx-4090", "num_gpus": 1,
   "max_hours": null, "max_cost_usd": null, "num_tasks": 1, "priority": "balanced"}
goals: style, specialization, domain_knowledge, proprietary_data, edge_cases, multi_task,
       reduce_inference_cost, output_format, factual_recall, small_footprint
"""


def add(sub) -> None:
    p = command_parser(sub, "recommend", "rank every method for your answers, with reasons",
                       "Rank the tuning methods for a questionnaire's answers (JSON), with reasons citing CRITERIA.md, "
                       "caveats, the settings that fit your GPU and their estimates.", ANSWERS_HELP)
    p.add_argument("--answers", required=True, metavar="FILE|-", help="answers JSON file, or - for stdin")
    p.add_argument("--json", action="store_true", help="print the recommendation JSON (DESIGN.md contract)")
    p.set_defaults(func=run)


def run(args) -> int:
    from advisor.answers import Answers
    from advisor.recommend import recommend

    rec = recommend(Answers.from_file(args.answers))
    print(json.dumps(rec.to_json(), indent=2) if args.json else format_recommendation(rec))
    return 0
