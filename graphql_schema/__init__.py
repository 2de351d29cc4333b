"""The GraphQL door: Strawberry types, inputs, queries, mutations, context and loaders."""
