"""A trained run measured: its metrics per modality, vocoding and WaveGrad's schedule search."""
