"""``python -m driftline`` and the ``driftline`` command: signals are handled before anything else."""

from driftline import lifecycle


def main() -> None:
    lifecycle.install()
    try:
        from driftline.cli import run

        run()
    except lifecycle.Interrupted as exc:  # during the imports; `run` handles those after
        lifecycle.exit_interrupted(exc)


if __name__ == "__main__":
    main()
