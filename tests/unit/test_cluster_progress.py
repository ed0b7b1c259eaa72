from tests.cluster.progress import PhaseTimer


def test_phase_table_lists_each_phase_and_the_total():
    timer = PhaseTimer()
    with timer.phase("build", "go"):
        pass
    with timer.phase("image"):
        pass
    lines = timer.table().splitlines()
    assert lines[0].split() == ["phase", "seconds", "note"]
    assert [line.split()[0] for line in lines[2:]] == ["build", "image", "total"]
