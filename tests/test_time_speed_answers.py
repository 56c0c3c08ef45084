"""The speed settings a user states in the questionnaire reach every plan of the recommendation (issue 21)."""
import pytest

from advisor.answers import SPEED_SETTINGS, Answers
from advisor.recommend import recommend
from estimators.errors import InputError

BASE = {"task": "chat", "goals": ["style"], "num_examples": 5000, "domain_distance": "close",
        "model": "llama-3.2-1b", "gpu": "a100-80gb", "avg_tokens_per_example": 300}


def _by_method(rec):
    return {r.method: r for r in rec.recommendations if r.plan is not None and r.estimate}


def test_stated_speed_settings_are_in_every_plan_and_change_its_time():
    plain = _by_method(recommend(Answers.from_dict(BASE)))
    fast = _by_method(recommend(Answers.from_dict({**BASE, "speed": {"packing": True, "compile": True,
                                                                      "fused_cross_entropy": True}})))
    assert set(fast) == set(plain) and "lora" in fast
    for method, advice in fast.items():
        settings = advice.plan.to_json()["settings"]
        assert settings["packing"] and settings["compile"] and settings["fused_cross_entropy"], method
        assert not plain[method].plan.to_json()["settings"].get("packing"), method
    # packing 300-token examples into full rows and compiling removes padding and launches: LoRA is faster
    seconds = {k: (v.estimate.get("time") or {}).get("seconds") for k, v in (("plain", plain["lora"]), ("fast", fast["lora"]))}
    assert seconds["fast"] < seconds["plain"], seconds


@pytest.mark.parametrize("speed, message", [
    ({"pack": True}, "unknown speed setting"),
    ({"compile": "yes"}, "speed.compile must be true or false"),
    (["packing"], "speed must be an object"),
])
def test_bad_speed_answers_are_named(speed, message):
    with pytest.raises(InputError, match=message):
        Answers.from_dict({**BASE, "speed": speed})


def test_the_cli_and_the_answers_share_one_list():
    from advisor.cli import options

    groups = dict(options.GROUPS)
    speed = next(names for title, names in groups.items() if title.startswith("speed settings"))
    assert speed is SPEED_SETTINGS
