/**
 * A fixed calibration for the adaptive policy's tests, so their verdicts do
 * not depend on the defaults (one machine's measurements): 2 turns save
 * 12 µs, a connection costs 30 µs, a 1 KiB write in a burst costs ~2.5 µs.
 */
import type { Calibration } from '../../src/adaptive/policy';

export const TEST_CALIBRATION: Calibration = {
  connectionCostNs: 30_000,
  turnSavingNs: 6000,
  burstMessageCostNs: 2500,
  byteSavingPs: 40,
};

/** The same, as `sockaccel run` flags. */
export const TEST_CALIBRATION_FLAGS: Readonly<Record<string, number>> = {
  'adaptive-connection-cost-ns': TEST_CALIBRATION.connectionCostNs,
  'adaptive-turn-saving-ns': TEST_CALIBRATION.turnSavingNs,
  'adaptive-burst-message-cost-ns': TEST_CALIBRATION.burstMessageCostNs,
  'adaptive-byte-saving-ps': TEST_CALIBRATION.byteSavingPs,
};
