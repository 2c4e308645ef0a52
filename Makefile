# fanout developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
DEVSTACK := $(PYTHON) scripts/devstack

.PHONY: install up down status test demo demo-debezium lint

STAMP := .devstack/pip-install.stamp

# pip install -e '.[dev]', skipped while pyproject.toml is unchanged and `import fanout`
# already resolves to this checkout (a warm `make test` then costs no pip run).
install:  ## the package and its dev tools, editable
	@want="$$(sha256sum pyproject.toml | cut -c1-16) $(CURDIR)"; \
	where="$$(cd / && $(PYTHON) -c 'import fanout, pathlib; print(pathlib.Path(fanout.__file__).parent.parent)' 2>/dev/null)"; \
	if [ "$$want" != "$$(cat $(STAMP) 2>/dev/null)" ] || [ "$$where" != "$(CURDIR)" ]; then \
		echo "pip install -e '.[dev]'"; \
		$(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[dev]' \
			&& mkdir -p .devstack && echo "$$want" > $(STAMP); \
	fi

up: install  ## start the local stack (Kafka, Elasticsearch, PostgreSQL, ClickHouse/chDB)
	$(DEVSTACK) up

down:  ## stop the local stack (data kept; `scripts/devstack down --purge` deletes it)
	$(DEVSTACK) down

status:
	$(DEVSTACK) status

test: up  ## the whole default suite (slow soak tests excluded) against the local stack
	$(PYTHON) -m pytest

demo: up  ## the main job on the local stack: CDC stream -> every sink, checked; says where it all is
	$(PYTHON) scripts/demo.py

demo-debezium: up  ## the same from a real Debezium connector capturing tables it makes in the source PostgreSQL
	$(PYTHON) scripts/demo.py --debezium

lint: install
	$(PYTHON) -m ruff check . scripts/devstack
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy scripts/devstack.d/devstack
