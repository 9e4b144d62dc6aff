/** Flow-matching sampling (UniPC, Euler, CFG) and the AE-Adapt-V training objective. */
export * from './schedule.js';
export * from './unipc.js';
export * from './flow_matching.js';
