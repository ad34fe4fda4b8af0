from __future__ import annotations

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from arena.leaderboard import services
from arena.models import SamplingWeights
from modelhub.models import Endpoint, Model
from tests.leaderboard.votes import make_vote, simulate_votes

ROUNDS = {"rounds": 40, "style_rounds": 10, "elo_rounds": 10, "min_votes": 0}


def test_it_says_when_no_leaderboard_is_published(db: None) -> None:
    from arena.models import LeaderboardSnapshot

    LeaderboardSnapshot.objects.all().delete()

    response = Client().get("/leaderboard/")

    assert response.status_code == 200
    assert "No leaderboard has been published yet" in response.content.decode()


def test_it_renders_the_board_with_its_toggles_and_plots(board_models: list[Model]) -> None:
    simulate_votes(board_models, 40)
    services.leaderboard_refresh(**ROUNDS)

    page = Client().get("/leaderboard/").content.decode()

    assert 'name="style"' in page and 'name="category"' in page and 'name="deprecated"' in page
    assert '<option value="coding"' in page
    for header in ("Rank (UB)", "Rating", "95% CI", "Votes", "Organization", "License"):
        assert header in page
    assert "Alpha 7B" in page and "apache-2.0" in page and "Alphacorp" in page
    assert page.count("<svg") == 4  # CI plot, win-rate and battle-count heatmaps, over time
    assert "<script" not in page.split("<main>")[1].split("</main>")[0]


def test_it_returns_only_the_board_fragment_to_htmx(board_models: list[Model]) -> None:
    simulate_votes(board_models, 40)
    services.leaderboard_refresh(**ROUNDS)

    response = Client().get(
        "/leaderboard/", {"style": "on", "category": "coding"}, HTTP_HX_REQUEST="true"
    )

    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section id="board"')
    assert "<html" not in fragment and "Fairness report" not in fragment
    assert "Style-controlled ratings · coding" in fragment
    assert "Style coefficients" in fragment


def test_it_hides_deprecated_models_by_name_unless_asked(board_models: list[Model]) -> None:
    simulate_votes(board_models, 40)
    services.leaderboard_refresh(**ROUNDS)
    client = Client()

    hidden = client.get("/leaderboard/", HTTP_HX_REQUEST="true").content.decode()
    shown = client.get(
        "/leaderboard/", {"deprecated": "on"}, HTTP_HX_REQUEST="true"
    ).content.decode()

    assert 'data-model="old-timer"' not in hidden
    assert "1 deprecated model hidden" in hidden and "Old Timer" in hidden
    assert 'data-model="old-timer"' in shown and "deprecated</span>" in shown


def test_it_lists_deprecated_and_private_models_in_the_fairness_report(
    board_models: list[Model],
) -> None:
    simulate_votes(board_models[:3], 20)
    Model.objects.filter(name="gamma-1").update(arena_eligible=False)
    snapshot = services.leaderboard_refresh(**ROUNDS)

    fairness = {m["model"]: m for m in snapshot.data["fairness"]["models"]}
    page = Client().get("/leaderboard/").content.decode()

    assert fairness["old-timer"]["deprecated"] and fairness["old-timer"]["votes"] == 0
    assert fairness["gamma-1"]["private"]
    assert abs(sum(m["vote_share"] for m in fairness.values()) - 1.0) < 1e-9
    orgs = {o["organization"]: o for o in snapshot.data["fairness"]["organizations"]}
    assert orgs["Alphacorp"]["models"] == 2
    fairness_html = page.split('id="fairness"')[1]
    assert 'data-model="old-timer"' in fairness_html
    assert "Sampling weights over time" in fairness_html


def test_it_records_sampling_weights_when_they_change(board_models: list[Model]) -> None:
    SamplingWeights.objects.all().delete()
    services.sampling_weights_record()
    services.sampling_weights_record()
    assert SamplingWeights.objects.count() == 1

    Model.objects.filter(name="alpha-7b").update(sampling_weight=3.0)
    latest = services.sampling_weights_record()

    assert latest is not None
    assert SamplingWeights.objects.count() == 2
    assert latest.weights["alpha-7b"]["weight"] == 3.0
    shares = [w["share"] for w in latest.weights.values()]
    assert abs(sum(shares) - 1.0) < 1e-5


def test_it_records_no_row_for_a_restart(board_models: list[Model]) -> None:
    """After a start every endpoint is unprobed, then healthy again: the weights in force did
    not change, so the history neither gains a row nor shows an empty one."""
    SamplingWeights.objects.all().delete()
    services.sampling_weights_record()
    for _restart in range(3):
        Endpoint.objects.update(healthy=False)
        services.sampling_weights_record()
        Endpoint.objects.update(healthy=True)
        services.sampling_weights_record()
    Model.objects.exclude(name="alpha-7b").update(enabled=False)  # one model: no battles
    services.sampling_weights_record()
    Model.objects.update(enabled=True)
    services.sampling_weights_record()
    simulate_votes(board_models, 4)
    services.leaderboard_refresh(**ROUNDS)

    page = Client().get("/leaderboard/").content.decode()

    assert SamplingWeights.objects.count() == 1
    table = page.split('id="sampling-weights"')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].count("<tr>")
    assert rows == 1 and "alpha-7b" in table


def test_it_shows_models_under_the_threshold_apart_without_a_rank(
    board_models: list[Model],
) -> None:
    alpha, beta, gamma, _ = board_models
    for k in range(30):
        make_vote(alpha, beta, "a" if k % 3 else "b")
    for choice in ("a", "b", "a", "tie", "a"):
        make_vote(alpha, gamma, choice)
    snapshot = services.leaderboard_refresh(**ROUNDS | {"min_votes": 25})

    page = Client().get("/leaderboard/").content.decode()

    ranked = page.split('id="leaderboard-table"')[1].split("</table>")[0]
    provisional = page.split('id="provisional-table"')[1].split("</table>")[0]
    assert "fewer than 25 counted votes" in page
    assert 'data-model="alpha-7b"' in ranked and 'data-model="beta-chat"' in ranked
    assert 'data-model="gamma-1"' in provisional and 'data-model="gamma-1"' not in ranked
    assert "provisional</span>" in provisional and ">5</td>" in provisional
    rows = {row["model"]: row for row in snapshot.data["boards"]["bt"][""]["models"]}
    assert rows["gamma-1"]["provisional"] and rows["gamma-1"]["rank"] is None
    assert rows["alpha-7b"]["rank"] == 1 and not rows["beta-chat"]["provisional"]


def test_it_says_how_both_bad_counts_and_offers_elo(board_models: list[Model]) -> None:
    simulate_votes(board_models, 40)
    services.leaderboard_refresh(**ROUNDS | {"ties": "davidson", "bothbad": "davidson"})
    client = Client()

    page = client.get("/leaderboard/").content.decode()
    elo = client.get("/leaderboard/", {"rating": "elo"}, HTTP_HX_REQUEST="true").content.decode()
    elo_coding = client.get(
        "/leaderboard/", {"rating": "elo", "category": "coding"}, HTTP_HX_REQUEST="true"
    ).content.decode()

    assert "“Both bad” votes: a tie kind of its own" in page
    assert '<option value="elo"' in page
    assert "Online Elo ratings" in elo and "depends on the order of the votes" in elo
    assert "--method elo" in elo and 'data-model="alpha-7b"' in elo
    assert "published for all categories together" in elo_coding
    assert 'data-model="alpha-7b"' in elo_coding and "--category" not in elo_coding


def test_it_renders_the_page_in_a_bounded_number_of_queries(board_models: list[Model]) -> None:
    simulate_votes(board_models, 40)
    services.leaderboard_refresh(**ROUNDS)
    client = Client()
    client.get("/leaderboard/")

    with CaptureQueriesContext(connection) as few:
        client.get("/leaderboard/")
    simulate_votes(board_models, 40, seed=2)
    services.leaderboard_refresh(**ROUNDS)
    with CaptureQueriesContext(connection) as more:
        client.get("/leaderboard/", {"deprecated": "on"})

    assert len(few) <= 4
    assert len(more) == len(few)


def test_a_count_heatmap_stays_one_hue_when_every_pair_met_once() -> None:
    """Counts shade white to blue, whatever their maximum: with every pair met once (the scale's
    top is 1, as a win rate's is) no cell may turn the win-rate red."""
    import re

    from arena import svg

    labels = ["A", "B", "C"]
    counts: list[list[float | None]] = [[None, 1, 0], [1, None, 1], [0, 1, None]]
    fills = re.findall(
        r'fill="rgb\((\d+),(\d+),(\d+)\)"', svg.heatmap(labels, counts, title="n", rate=False)
    )
    assert len(fills) == 6
    assert all(int(b) == 255 and int(r) <= int(g) for r, g, b in fills)  # white to blue only
    rates: list[list[float | None]] = [[None, 0.0, 1.0], [1.0, None, 0.5], [0.0, 0.5, None]]
    fills = re.findall(
        r'fill="rgb\((\d+),(\d+),(\d+)\)"', svg.heatmap(labels, rates, title="w", rate=True)
    )
    assert any(int(b) < 255 for _, _, b in fills)  # a losing share is red


def test_the_rating_chart_marks_a_single_point_in_the_middle() -> None:
    """After the first counted vote each model's rating history is one point: a polyline of one
    point draws nothing, so it is a dot, mid-axis; longer histories stay lines."""
    import re

    from arena import svg

    one = svg.line_chart({"A": [(1, 1100.0)], "B": [(1, 900.0)]}, title="t", x_label="votes")
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', one)
    assert len(dots) == 2 and "<polyline" not in one
    assert {float(cx) for cx, _ in dots} == {50 + 420 / 2}  # the plot's left edge + half its width
    assert float(dots[0][1]) < float(dots[1][1])  # the higher rating stands higher
    two = svg.line_chart({"A": [(1, 1100.0), (2, 1150.0)]}, title="t", x_label="votes")
    assert "<polyline" in two and "<circle" not in two
