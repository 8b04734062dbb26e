"""Issue 19, data-changing variants: a variant that changed observed data kept the base run's
background density (a posterior moved from 0.491 to 0.409 in a check) and the CLI accepted any data
name. A variant may now set only priors and switches (``VARIANT_KEYS``); observed data and what is
computed from it are refused with an error naming the key and saying what to do."""

from __future__ import annotations

import pytest

from engine.errors import RunError
from engine.run.settings import VARIANT_KEYS, Variant


def test_a_variant_may_set_priors_and_switches():
    assert VARIANT_KEYS == ("hp__", "use__", "inc__")
    v = Variant.of("ok", {"hp__reliability__lab": [3.0, 1.0], "use__tail-holes": 0, "inc__g__press": 0.0})
    assert v.data()["hp__reliability__lab"].tolist() == [3.0, 1.0] and v.data()["use__tail-holes"] == 0.0


@pytest.mark.parametrize("key", ["obs__holes__n", "bg__holes", "lh__frags", "holes__n", "mu"])
def test_a_variant_that_sets_observed_data_or_what_follows_from_it_is_refused_naming_the_key(key):
    with pytest.raises(RunError, match=rf"variant 'bad': {key} is not a prior or a switch; a variant may set only "
                                       r"hp__<name>, use__<name>, inc__<name> .* run a copy of the case with the other observation"):
        Variant.of("bad", {key: 1.0})
