/**
 * Text-to-video: prompt and negative prompt -> tokenizer -> text encoder (umT5; freed, or never loaded when the
 * embeddings are cached) -> DiT sampling (UniPC or Euler, CFG, shift, steps, seed) -> streaming autoencoder decode ->
 * video file (written atomically). Runs the DC-VideoGen DiT on DC-AE-V latents (patch 1x1x1) and the base Wan-2.1 DiT
 * on Wan VAE latents (patch 1x2x2) alike; see generation.ts for the stages and the latent conventions.
 */
import { runGeneration, type GenerationModels, type GenerationOptions, type GenerationResult } from './generation.js';

export type TextToVideoOptions = GenerationOptions;

/** Generates a video from a prompt into `output` (.mp4, .gif, .y4m, or a PNG folder / pattern). */
export function textToVideo(models: GenerationModels, o: TextToVideoOptions, output: string): Promise<GenerationResult> {
  return runGeneration(models, o, output, null);
}
