/**
 * The umT5 prompt tokenizer (Wan's 'whitespace' cleaning + SentencePiece unigram), from spiece.model or a HuggingFace
 * tokenizer.json; implements `PromptTokenizer` of src/pipelines/components.ts. See docs/tokenizer.md.
 */
export { loadTokenizer, loadTokenizerSync, Umt5Tokenizer, type LoadTokenizerOptions, type TokenizeOptions } from './tokenizer.js';
export { cleanPrompt, ftfyFixText, htmlUnescape, type CleanOptions } from './clean.js';
export { parseSentencePieceModel, PieceType, type Piece, type TokenizerModel } from './model.js';
export { parseTokenizerJson, toTokenizerJson } from './tokenizer_json.js';
