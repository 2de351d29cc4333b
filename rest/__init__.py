"""The legacy REST door: translates HTTP to the repository and back, as ../CONTRACT.md says."""
