"""botocore's data loader, without a scan of every service's directory for each kind of model loaded.

botocore's `Loader.load_service_model(name, type_name)` first lists every service that has a
`type_name` model (`list_available_services`: one `listdir` per service directory, over four
hundred of them, and a file test per API version) only to ask whether `name` is among them. It
does so once per kind of model (service-2, endpoint-rule-set-1), and again in each thread that
gets there before the first listing is cached: 20-40 ms of CPU each time, on the path of every
client a run builds.

`ModelLoader` answers that question from the one service's directory, exactly as the listing
would (same search paths, same file test); listing the services (`--service` close matches,
botocore's UnknownServiceError message) still reads them all.

It also parses the model files into plain dicts, not botocore's `OrderedDict`s (an
`object_pairs_hook` that doubles the parse: endpoints.json, 1.2 MB and read by the first client
of every run, 23 → 10 ms). Python's dict keeps insertion order, and nothing in botocore needs
more than that (no `move_to_end`, no OrderedDict type test); the models compare equal
(tests/test_aws_loader.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader


class _KnownServices:
    """The services that have a `type_name` model, as `load_service_model` uses the list: a name is
    looked up in its own directory; iterating lists them all (botocore's own scan, cached)."""

    def __init__(self, loader: ModelLoader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name or name.startswith(".") or os.sep in name or "/" in name:
            return name in self._all()  # not a directory name: as botocore would answer it
        try:
            return bool(self._loader.list_api_versions(name, self._type_name))
        except DataNotFoundError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def _all(self) -> list[str]:
        return list(Loader.list_available_services(self._loader, self._type_name))


class PlainJSONFileLoader(JSONFileLoader):
    """botocore's JSON file loader (same files, same extensions, gzip), parsing into plain dicts."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return json.loads(fp.read().decode("utf-8"))


class ModelLoader(Loader):
    def __init__(self, extra_search_paths: list[str] | None = None) -> None:
        super().__init__(extra_search_paths=extra_search_paths, file_loader=PlainJSONFileLoader())

    def list_available_services(self, type_name: str) -> Any:
        return _KnownServices(self, type_name)


def create_model_loader(search_path_string: str | None = None) -> ModelLoader:
    """As `botocore.loaders.create_loader` (AWS_DATA_PATH: `search_path_string`), a ModelLoader."""
    if search_path_string is None:
        return ModelLoader()
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in search_path_string.split(os.pathsep)]
    return ModelLoader(extra_search_paths=paths)
