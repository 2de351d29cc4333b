"""Write the schema's SDL to graphql_schema/schema.graphql: `python -m graphql_schema.export_schema`."""

from pathlib import Path

from graphql_schema.schema import schema

SDL_PATH = Path(__file__).with_name("schema.graphql")


def schema_sdl() -> str:
    """The schema as SDL text, exactly as it is checked in."""
    return schema.as_str() + "\n"


def main() -> None:
    """Regenerate the checked-in SDL file."""
    SDL_PATH.write_text(schema_sdl(), encoding="utf-8")


if __name__ == "__main__":
    main()
