"""`[[segments]] mode = ...` in haven.toml: read, refused by name when unknown, applied by serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.domain.errors import ConfigError
from haven.domain.incidents import RecoveryMethod, SegmentMode
from haven.service.config import load_config


def config_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return path


def test_modes_and_methods_are_read_per_segment(tmp_path: Path) -> None:
    path = config_with(
        tmp_path,
        '[[segments]]\nname = "segment-az1"\nmode = "notify"\n'
        '[[segments]]\nname = "segment-az2"\nmode = "dry_run"\nrecovery_method = "reserved_host"\n'
        '[[segments]]\nname = "segment-az3"\nrecovery_method = "auto_priority"\n',
    )
    config = load_config(tmp_path, path)
    assert config.segment_modes == {"segment-az1": SegmentMode.NOTIFY, "segment-az2": SegmentMode.DRY_RUN}
    # A mode alone leaves the segment's recovery method as it is.
    assert config.segment_methods == {
        "segment-az2": RecoveryMethod.RESERVED_HOST,
        "segment-az3": RecoveryMethod.AUTO_PRIORITY,
    }
    assert config.segment_names == {"segment-az1", "segment-az2", "segment-az3"}


@pytest.mark.parametrize("value", ['"manual"', '"NOTIFY"', "1", "true"])
def test_an_unknown_mode_is_named_with_the_choices(tmp_path: Path, value: str) -> None:
    path = config_with(tmp_path, f'[[segments]]\nname = "segment-az1"\nmode = {value}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, path)
    assert "segment segment-az1 has unknown mode" in caught.value.message
    assert "automatic, notify, dry_run" in caught.value.hint
