"""What the tests share: real servers, generated backups, the corpus, waiting."""
