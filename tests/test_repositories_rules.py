"""The rules of per-grant repositories (issue 19), without a server: ghmcp/auth/repositories.py."""

from __future__ import annotations

import pytest

from ghmcp.auth.repositories import ALL, Bound, Boundary, Choice, Entry, decode, encode, parse_bound, parse_names

HELLO = Entry("octocat", "Hello-World", owner_id=1, repo_id=10)
ACME = Entry("acme", None, owner_id=5)
CHOSEN = Choice((HELLO, ACME))


def test_typed_names_are_owners_or_owner_slash_repo_and_a_bad_one_is_one_sentence() -> None:
    assert parse_names("octocat/hello-world, acme\n acme") == [("octocat", "hello-world"), ("acme", None)]
    with pytest.raises(ValueError, match=r"'alice/\.\.' is not a GitHub owner or owner/repository name"):
        parse_names("octocat alice/..")
    with pytest.raises(ValueError, match="is not a GitHub owner"):
        parse_names("-bad")


def test_names_match_case_insensitively_as_on_github() -> None:
    boundary = Boundary("g", CHOSEN, Bound())
    assert boundary.admits("OCTOCAT", "hello-world") == HELLO
    assert boundary.admits("Acme", "anything") == ACME  # an owner entry covers its repositories
    assert boundary.admits("octocat", "hello-world-2") is False
    assert boundary.admits("alice", "dotfiles") is False


def test_a_repository_entry_is_preferred_to_its_owners_entry() -> None:
    both = Choice((Entry("octocat", None, owner_id=1), HELLO))
    assert both.entry_for("octocat", "hello-world") == HELLO


def test_narrowing_is_an_intersection_and_never_widens() -> None:
    assert ALL.narrowed_to(CHOSEN) == CHOSEN
    assert CHOSEN.narrowed_to(ALL) == CHOSEN
    assert CHOSEN.narrowed_to(Choice((HELLO,))) == Choice((HELLO,))
    wider = Choice((HELLO, Entry("alice", "dotfiles", owner_id=1001, repo_id=99)))
    assert CHOSEN.narrowed_to(wider) == Choice((HELLO,))
    under_acme = Entry("acme", "site", owner_id=5, repo_id=77)
    assert CHOSEN.narrowed_to(Choice((under_acme,))) == Choice((under_acme,))
    # The same name held by another account (another id) is not covered: names change hands.
    taken_over = Entry("octocat", "hello-world", owner_id=1, repo_id=11)
    assert CHOSEN.narrowed_to(Choice((taken_over,))) == Choice(())


def test_the_choice_is_stored_as_text_and_read_back() -> None:
    assert encode(ALL) == "" and decode("") == ALL
    assert decode(encode(CHOSEN)) == CHOSEN
    assert decode(encode(Choice(()))) == Choice(())  # nothing chosen: nothing reachable, not everything


def test_the_server_bound_applies_on_top_of_an_all_choice() -> None:
    bound = parse_bound(["octocat/*", "alice/notes"])
    boundary = Boundary("g", ALL, bound)
    assert boundary.admits("Octocat", "anything") is None  # admitted by name (no id was chosen)
    assert boundary.admits("alice", "NOTES") is None
    assert boundary.admits("alice", "dotfiles") is False
    assert not boundary.everything
    assert Boundary("g", CHOSEN, bound).admits("acme", "site") is False
    with pytest.raises(ValueError, match="not owner/"):
        parse_bound(["octocat"])


def test_search_qualifiers_outside_the_boundary_are_named() -> None:
    boundary = Boundary("g", CHOSEN, Bound())
    assert boundary.refused_in_search("mcp repo:octocat/hello-world") is None
    assert boundary.refused_in_search("mcp org:acme") is None
    assert boundary.refused_in_search("mcp REPO:alice/dotfiles") == "alice/dotfiles"
    assert boundary.refused_in_search('mcp user:"alice"') == "alice"
    assert boundary.refused_in_search("mcp -repo:alice/dotfiles") is None  # an exclusion reaches nothing
    assert Boundary("g", ALL, Bound()).refused_in_search("user:alice") is None


def test_listings_keep_chosen_repositories_by_name_and_id() -> None:
    boundary = Boundary("g", CHOSEN, Bound())
    assert boundary.keeps("octocat", "hello-world", 10, 1)
    assert not boundary.keeps("octocat", "hello-world", 11, 1)  # same name, another repository
    assert boundary.keeps("acme", "site", 77, 5)
    assert not boundary.keeps("acme", "site", 77, 6)  # the owner name was taken over
    assert not boundary.keeps("alice", "dotfiles", 99, 1001)
