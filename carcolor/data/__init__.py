"""Stage 1, the data: the synthetic DVM-Car generator, DVM-Car's files and archives, and preparation
(colours, advert-level split, the uint8 cache). Imports nothing of the later stages."""
