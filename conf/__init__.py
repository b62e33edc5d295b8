"""The Hydra config tree (one folder per config group). Not code: this file makes the tree the
package ``spikelight.conf`` so that it ships inside wheels (see pyproject.toml)."""
