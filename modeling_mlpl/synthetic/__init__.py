"""The embedded multilingual corpus: espeak-ng speech of real word-frequency text, laid out like Common
Voice and VoxPopuli so that the ordinary loaders read it (:mod:`.corpus`; imported on demand)."""
