"""What a page says about leadership (pure): the embedded single engine says nothing; a follower
names the leader and links its dashboard, built from the identity haven serve gives etcd."""

from __future__ import annotations

from haven.dashboard.leadership import LeaderView, leader_view
from haven.service.status import SingleNodeLeadership


def test_the_single_engine_is_no_follower() -> None:
    view = leader_view(SingleNodeLeadership("host-1:42"))
    assert not view.several and view.leading and not view.follower
    assert not leader_view(None).follower


def test_the_leaders_dashboard_from_its_identity() -> None:
    def url(leader: str | None) -> str | None:
        return LeaderView(True, False, "me:1@127.0.0.1:9", leader).leader_url

    assert url("ctl-1:812@10.0.0.5:15868") == "http://10.0.0.5:15868/dashboard/"
    assert url("ctl-1:812@[fd00::5]:15868") == "http://[fd00::5]:15868/dashboard/"
    assert url("ctl-1:812@0.0.0.0:15868") == "http://ctl-1:15868/dashboard/"  # every address: its name
    assert url("ctl-1:812@[::]:15868") == "http://ctl-1:15868/dashboard/"
    assert url("engine-0") is None and url(None) is None and url("a@b:port") is None
