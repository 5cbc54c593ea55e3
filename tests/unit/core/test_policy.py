"""Retry policy: signal and retry_on parsing, outcomes and the requeue decision."""

import signal

import pytest

from torchx_forge.core.policy import (
    DEFAULT_RETRY_ON,
    REQUEUE_EXIT,
    RETRYABLE_STATES,
    Decision,
    Outcome,
    PolicyError,
    RetryPolicy,
    Warning_,
    check_lead_time,
    decide,
    outcome_of,
    parse_retry_on,
    parse_signal,
    retry_policy,
)

# -- parse_signal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,name,lead",
    [
        ("USR1@90", "USR1", 90),
        ("SIGUSR2@30", "USR2", 30),
        ("usr2@7", "USR2", 7),
        ("sigusr1@1", "USR1", 1),
        (" USR1@90 ", "USR1", 90),
        ("HUP@20", "HUP", 20),
        (f"{int(signal.SIGUSR1)}@5", "USR1", 5),
        (f"{int(signal.SIGUSR2)}@45", "USR2", 45),
    ],
)
def test_parse_signal(text, name, lead):
    w = parse_signal(text)
    assert w == Warning_(name, lead)
    assert w.sbatch_flag == f"--signal=B:{name}@{lead}"
    assert w.number == int(getattr(signal, f"SIG{name}"))


def test_parse_signal_number_10_is_usr1_on_linux():
    assert int(signal.SIGUSR1) == 10  # the brief's example assumes Linux numbering
    assert parse_signal("10@5") == Warning_("USR1", 5)


def test_parse_signal_default_is_usr1_90():
    assert parse_signal(None) == Warning_("USR1", 90)


@pytest.mark.parametrize("text", ["off", "OFF", "none", "None", "no", "false", "", "  "])
def test_parse_signal_off(text):
    assert parse_signal(text) is None


@pytest.mark.parametrize(
    "text",
    ["USR1", "@90", "USR1@", "USR1@-5", "USR1@1.5", "USR1 @ 90", "USR1@90s", "NOPE@10", "999@10", "USR1@0"],
)
def test_parse_signal_bad_forms(text):
    with pytest.raises(PolicyError) as e:
        parse_signal(text)
    assert e.value.key == "signal"
    assert repr(text) in str(e.value)


@pytest.mark.parametrize("text", ["KILL@10", "SIGKILL@10", "TERM@10", "SIGTERM@60", "STOP@5", "CONT@5",
                                  f"{int(signal.SIGKILL)}@10", f"{int(signal.SIGTERM)}@10"])
def test_parse_signal_rejects_kill_term_stop_cont(text):
    with pytest.raises(PolicyError, match="cannot serve as a warning"):
        parse_signal(text)


# -- parse_retry_on --------------------------------------------------------------------------


def test_parse_retry_on_default():
    assert parse_retry_on(None) == DEFAULT_RETRY_ON == ("TIMEOUT", "PREEMPTED", "NODE_FAIL")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("TIMEOUT,FAILED", ("TIMEOUT", "FAILED")),
        ("timeout, failed", ("TIMEOUT", "FAILED")),
        ("TIMEOUT FAILED  OUT_OF_MEMORY", ("TIMEOUT", "FAILED", "OUT_OF_MEMORY")),
        ("PREEMPTED;NODE_FAIL", ("PREEMPTED", "NODE_FAIL")),
        (["timeout", "FAILED"], ("TIMEOUT", "FAILED")),
        (("DEADLINE",), ("DEADLINE",)),
        ("TIMEOUT,", ("TIMEOUT",)),
    ],
)
def test_parse_retry_on(text, expected):
    assert parse_retry_on(text) == expected


def test_parse_retry_on_unknown_state_lists_valid_ones():
    with pytest.raises(PolicyError) as e:
        parse_retry_on("TIMEOUT,CANCELLED,bogus")
    msg = str(e.value)
    assert e.value.key == "retry_on"
    assert "CANCELLED" in msg and "BOGUS" in msg
    for state in RETRYABLE_STATES:
        assert state in msg


# -- check_lead_time -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [90, 60])
def test_check_lead_time_error_names_both(limit):
    with pytest.raises(PolicyError) as e:
        check_lead_time(Warning_("USR1", 90), limit, "00:01:30")
    msg = str(e.value)
    assert e.value.key == "signal"
    assert "USR1@90" in msg
    assert "00:01:30" in msg
    assert f"{limit} s" in msg


@pytest.mark.parametrize("warning,limit", [(Warning_("USR1", 90), 91), (None, 10), (Warning_("USR1", 90), None)])
def test_check_lead_time_ok(warning, limit):
    assert check_lead_time(warning, limit, "t") is None


# -- retry_policy ----------------------------------------------------------------------------


def test_retry_policy_defaults():
    p = retry_policy(None, None, None, None)
    assert p == RetryPolicy(max_retries=0, retry_on=DEFAULT_RETRY_ON, warning=Warning_("USR1", 90), grace=60)
    assert not p.enabled


@pytest.mark.parametrize("sig,grace", [("USR1@90", 60), ("USR1@30", 20), ("USR1@11", 1), ("USR1@5", 1), ("off", 60)])
def test_retry_policy_default_grace(sig, grace):
    p = retry_policy(2, "TIMEOUT", sig, None)
    assert p.grace == grace
    assert p.max_retries == 2 and p.enabled
    assert p.retry_on == ("TIMEOUT",)


def test_retry_policy_explicit_grace():
    p = retry_policy(1, None, "USR2@120", 100)
    assert p.grace == 100
    assert p.warning == Warning_("USR2", 120)


def test_retry_policy_grace_without_warning_is_unbounded():
    assert retry_policy(1, None, "off", 500).grace == 500


@pytest.mark.parametrize("grace", [30, 31, 300])
def test_retry_policy_grace_too_long(grace):
    with pytest.raises(PolicyError) as e:
        retry_policy(1, None, "USR1@30", grace)
    assert e.value.key == "grace"
    assert "USR1@30" in str(e.value) and f"{grace} s" in str(e.value)


def test_retry_policy_names_the_bad_setting():
    with pytest.raises(PolicyError) as e:
        retry_policy(1, None, "KILL@5", None)
    assert e.value.key == "signal"
    with pytest.raises(PolicyError) as e:
        retry_policy(1, "nope", None, None)
    assert e.value.key == "retry_on"


# -- outcome_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exit_code,warned,stopped_by,outcome",
    [
        (0, False, None, Outcome.COMPLETED),
        (0, True, int(signal.SIGTERM), Outcome.COMPLETED),
        (REQUEUE_EXIT, False, None, Outcome.INTERRUPTED),
        (75, False, int(signal.SIGTERM), Outcome.INTERRUPTED),
        (1, True, None, Outcome.INTERRUPTED),
        (-int(signal.SIGUSR1), True, None, Outcome.INTERRUPTED),
        (143, True, int(signal.SIGTERM), Outcome.INTERRUPTED),
        (143, False, int(signal.SIGTERM), Outcome.STOPPED),
        (1, False, int(signal.SIGTERM), Outcome.STOPPED),
        (1, False, None, Outcome.FAILED),
        (137, False, None, Outcome.FAILED),
    ],
)
def test_outcome_of(exit_code, warned, stopped_by, outcome):
    assert outcome_of(exit_code, warned, stopped_by) is outcome


# -- decide ----------------------------------------------------------------------------------

C, INT, F, S = Outcome.COMPLETED, Outcome.INTERRUPTED, Outcome.FAILED, Outcome.STOPPED


def pol(max_retries=3, retry_on=DEFAULT_RETRY_ON):
    return RetryPolicy(max_retries=max_retries, retry_on=tuple(retry_on))


@pytest.mark.parametrize("outs", [[], [C], [C, C, C]])
def test_decide_all_completed(outs):
    d = decide(outs, 1, pol())
    assert d == Decision(False, "all tasks completed")


@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_decide_interrupted_within_budget_requeues(attempts):
    d = decide([C, INT], attempts, pol(3))
    assert d.requeue is True
    assert "TIMEOUT" in d.reason
    assert f"retry {attempts} of 3" in d.reason


def test_decide_interrupted_needs_timeout_in_retry_on():
    d = decide([INT], 1, pol(3, ["FAILED"]))
    assert d.requeue is False
    assert "TIMEOUT is not in retry_on" in d.reason


def test_decide_interrupted_beats_failed():
    # one task interrupted (saved), another failed: treated like a timeout
    assert decide([F, INT], 1, pol(3)).requeue is True


def test_decide_failed_not_in_default_retry_on():
    d = decide([C, F], 1, pol(3))
    assert d.requeue is False
    assert "FAILED is not in retry_on" in d.reason
    assert "TIMEOUT,PREEMPTED,NODE_FAIL" in d.reason


def test_decide_failed_when_asked():
    d = decide([C, F], 1, pol(2, ["TIMEOUT", "FAILED"]))
    assert d.requeue is True
    assert "FAILED" in d.reason


@pytest.mark.parametrize("max_retries,attempts", [(3, 4), (3, 10), (0, 1), (1, 2)])
def test_decide_exhausted_budget(max_retries, attempts):
    d = decide([INT], attempts, pol(max_retries))
    assert d.requeue is False
    assert "retries exhausted" in d.reason
    assert f"max_retries={max_retries}" in d.reason


def test_decide_exhausted_budget_for_failed_too():
    d = decide([F], 3, pol(2, ["FAILED"]))
    assert d.requeue is False and "retries exhausted" in d.reason


@pytest.mark.parametrize("bad", [Outcome.EXHAUSTED, Outcome.BAD_CHECKPOINT])
def test_decide_never_requeues_exhausted_or_bad_checkpoint(bad):
    d = decide([INT, bad, C], 1, pol(5, RETRYABLE_STATES))
    assert d.requeue is False
    assert "could not start" in d.reason


@pytest.mark.parametrize("outs", [[S], [C, S], [S, S]])
def test_decide_stopped_from_outside(outs):
    d = decide(outs, 1, pol(5, RETRYABLE_STATES))
    assert d.requeue is False
    assert "stopped from outside" in d.reason


def test_decide_accepts_any_iterable():
    assert decide(iter([INT]), 1, pol(1)).requeue is True


# -- after the warning -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exit_code,finished,saved,outcome",
    [
        (0, False, True, Outcome.INTERRUPTED),  # saved and exited 0: not finished, resume it
        (0, True, True, Outcome.COMPLETED),  # said it finished
        (0, False, False, Outcome.COMPLETED),  # saved nothing since the warning: nothing to resume
        (3, False, False, Outcome.INTERRUPTED),
        (3, True, True, Outcome.INTERRUPTED),  # finished() says nothing about a failing exit
    ],
)
def test_outcome_after_the_warning(exit_code, finished, saved, outcome):
    assert outcome_of(exit_code, True, None, finished=finished, saved=saved) is outcome


def test_outcome_of_an_unwarned_exit_0_is_completed_whatever_was_saved():
    assert outcome_of(0, False, None, finished=False, saved=True) is Outcome.COMPLETED


def test_decide_names_preemption_when_sigterm_warned_the_program():
    d = decide([INT], 1, pol(2), preempted=True)
    assert d.requeue and d.reason == "PREEMPTED: retry 1 of 2"
    assert decide([INT], 1, pol(2, ["TIMEOUT"]), preempted=True).requeue is False


def test_slurm_caps_the_lead_time():
    assert parse_signal("USR1@65535") == Warning_("USR1", 65535)
    with pytest.raises(PolicyError, match="at most 65535"):
        parse_signal("USR1@99999")


def test_the_budget_counts_retries_granted_by_hand_and_travels_by_env():
    p = RetryPolicy(max_retries=2, retry_on=("FAILED",), extra_retries=3)
    assert p.budget == 5 and p.attempts_left(5) and not p.attempts_left(6)
    back = RetryPolicy.from_env(p.to_env())
    assert (back.budget, back.retry_on, back.warning) == (5, ("FAILED",), Warning_("USR1", 0))
