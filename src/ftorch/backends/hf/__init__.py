"""The Hugging Face training pieces every local provider shares (peft, unsloth; axolotl for checkpoints and the
preference rules): loading, Trainer callbacks, publishing the adapter, checkpoints, tokenization and packing
(preprocess, varlen), train.* as Trainer arguments (translate), the memory estimate and the settings that fit a
card (memory, fit), the preference methods, and the one training loop (loop)."""
