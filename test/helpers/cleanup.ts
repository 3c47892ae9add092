// The cleanup helpers live in src/ (the bench uses them too).
export { cleanUpOnFailure, runThenCleanUp } from '../../src/common/cleanup';
