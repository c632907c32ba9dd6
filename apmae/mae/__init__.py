"""AP-MAE: a masked autoencoder over attention-pattern images, and the pattern-to-image scaling."""
