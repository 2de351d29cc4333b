"""The schema Alembic builds is the schema the models declare."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import SQLModel
from db.urls import as_sqlalchemy_url


def test_models_and_migration_head_agree(database_url: str) -> None:
    async def differences() -> list[object]:
        engine = create_async_engine(as_sqlalchemy_url(database_url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        SQLModel.metadata,
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []
