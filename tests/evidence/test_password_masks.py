"""One password masker (haven.domain.masking) for the broker look's words, database URLs and serve's line.

Review R2-N3: the broker look masked its password with ``str(exc).replace(password, "***")``, so a short
password ("e", or the default "guest") mangled the error's words ("Conn***ction r***fus***d"). The store's
regex masked only the first userinfo of a URL, and let SQLAlchemy's own words quote the password of a URL
that does not parse; serve's start-up line had a third masker of its own.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from haven.domain.errors import StoreUnavailable
from haven.domain.masking import mask_url, mask_words, url_passwords
from haven.evidence.broker import BrokerUnreachable, look
from haven.store.engine import parse
from servers.process import free_port


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://haven:s3cret@db/haven", "postgresql://haven:***@db/haven"),
        ("rabbit://nova:p1@h1:5672,nova:p2@h2:5672/", "rabbit://nova:***@h1:5672,nova:***@h2:5672/"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),  # an unencoded @ in the password
        ("rabbit://u:a,b@h:5672/", "rabbit://u:***@h:5672/"),  # a comma in the password
        ("postgresql://u:ab/cd@host/db", "postgresql://u:***@host/db"),  # a slash in the password
        ("postgresql://u:p:q@h/db?x=a@b", "postgresql://u:***@h/db?x=a@b"),  # an @ in the query
        ("sqlite:////tmp/a@b/state.db", "sqlite:////tmp/a@b/state.db"),  # no userinfo: as it is
        ("rabbit://guest@h/", "rabbit://guest@h/"),  # no password
        ("haven.db", "haven.db"),
        # review R1-3: a '#' or '?' in the password (SQLAlchemy reads it so) was taken for the fragment or
        # the query, the URL returned unmasked, and serve's start-up line printed the password
        ("postgresql://haven:Ab#9xYz@db/haven", "postgresql://haven:***@db/haven"),
        ("postgresql://haven:Ab?9xYz@db/haven", "postgresql://haven:***@db/haven"),
        ("postgresql://haven:Ab#9@db?sslmode=require", "postgresql://haven:***@db?sslmode=require"),
        # review R2-D2: a password holding '@' then '?' kept its tail, a second host's '#' its whole
        ("postgresql://haven:Xk@9?pL2@db/haven", "postgresql://haven:***@db/haven"),
        ("rabbit://nova:pa?ss@h1:5672,nova:pa#ss@h2:5672/", "rabbit://nova:***@h1:5672,nova:***@h2:5672/"),
        # no password but an '@' in the query: SQLAlchemy reads user db and a password, so it is masked
        ("postgresql://db:5432/haven?a=x@b", "postgresql://db:***@b"),
    ],
)
def test_each_userinfo_password_is_masked_whatever_it_holds(raw: str, masked: str) -> None:
    assert mask_url(raw) == masked


def test_a_password_sqlalchemy_reads_with_a_hash_is_masked_in_the_url_and_in_words() -> None:
    raw = "postgresql://haven:Ab#9xYz@db/haven"
    password = make_url(raw).password
    assert password == "Ab#9xYz"  # the URL works as it is: the password is really there
    assert url_passwords(raw) == [password]
    assert password not in mask_url(raw)
    assert password not in mask_words(f"could not connect: password {password} refused", url_passwords(raw))


def test_in_words_a_password_is_masked_where_it_can_be_the_credential_and_no_word_is_mangled() -> None:
    said = "ConnectionRefusedError: [Errno 111] Connection refused; the look failed"
    assert mask_words(said, ["e"]) == said  # before: "Conn***ction r***fus***d"
    assert mask_words(said, ["a"]) == said
    assert mask_words("user 'guest' refused; guesthouse", ["guest"]) == "user '***' refused; guesthouse"
    assert mask_words("base 10: 'ab@h2'", ["ab"]) == "base 10: '***@h2'"  # a userinfo's remnant, short
    assert mask_words("at amqp://nova:e@h:5672/ now", ["e"]) == "at amqp://nova:***@h:5672/ now"
    assert mask_words("x-averylongsecret1-y", ["averylongsecret1"]) == "x-***-y"
    assert mask_words("tokenaverylongsecret1", ["averylongsecret1"]) == "token***"


def test_a_failed_look_says_its_words_unmangled() -> None:
    with pytest.raises(BrokerUnreachable) as caught:
        look(f"rabbit://nova:e@127.0.0.1:{free_port()}/", timeout_s=1.0)
    said = str(caught.value)
    assert "Connection refused" in said and "***" not in said


def test_a_failed_look_never_says_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import amqp  # type: ignore[import-untyped]

    def quoting(self: object) -> None:
        raise OSError("amqp://nova:Secr3tPw@10.0.0.1:5672/ refused Secr3tPw")

    monkeypatch.setattr(amqp.Connection, "connect", quoting)
    with pytest.raises(BrokerUnreachable) as caught:
        look("rabbit://nova:Secr3tPw@10.0.0.1:5672/", timeout_s=1.0)
    assert "Secr3tPw" not in str(caught.value) and "nova:***@10.0.0.1" in str(caught.value)


def test_a_database_url_that_does_not_parse_never_says_a_password() -> None:
    # SQLAlchemy's words quote the second host's userinfo ("invalid literal for int(): 's3cret@h2'"),
    # and the store's regex masked the first userinfo only
    raw = "postgresql://haven:s3cret@h1,haven:s3cret@h2/haven"
    with pytest.raises(StoreUnavailable) as caught:
        parse(raw)
    assert "s3cret" not in str(caught.value)
    assert "haven:***@h1,haven:***@h2" in str(caught.value)
    assert url_passwords(raw) == ["s3cret", "s3cret"]
