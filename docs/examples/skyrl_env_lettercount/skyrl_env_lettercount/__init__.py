"""Count a letter in a word: an example skyrl environment package (docs/custom_environments.md)."""
