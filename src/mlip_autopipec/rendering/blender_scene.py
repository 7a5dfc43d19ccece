"""Runs INSIDE Blender (`blender --background --python blender_scene.py -- scene.json`), not in the
project's interpreter: it may import only Blender's own modules and the standard library.

scene.json (written by mlip_autopipec.rendering.blender): image size, Cycles samples, the camera
(position, target, field of view) and per frame the output PNG and the atoms (positions, radii,
RGB colours). Every frame is rendered with Cycles on the CPU.
"""

import json
import sys

import bpy
from mathutils import Vector


def main() -> None:
    scene_file = sys.argv[sys.argv.index("--") + 1]
    with open(scene_file) as handle:
        spec = json.load(handle)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = spec["samples"]
    scene.cycles.use_denoising = False  # OpenImageDenoise is not in every Blender build
    scene.render.resolution_x, scene.render.resolution_y = spec["size"]
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # Filmic would grey the white background and the colours

    world = bpy.data.worlds.new("background")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world

    camera_data = bpy.data.cameras.new("camera")
    camera_data.angle = spec["camera"]["fov_radians"]
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    camera.location = Vector(spec["camera"]["position"])
    look = Vector(spec["camera"]["target"]) - camera.location
    camera.rotation_euler = look.to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera

    sun_data = bpy.data.lights.new("sun", type="SUN")
    sun_data.energy = 3.0
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = camera.rotation_euler
    scene.collection.objects.link(sun)

    material = bpy.data.materials.new("atom")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    info = nodes.new("ShaderNodeObjectInfo")  # each atom object's own colour drives the material
    links.new(info.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.4

    bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12, radius=1.0)
    template = bpy.context.active_object
    bpy.ops.object.shade_smooth()
    sphere = template.data
    sphere.materials.append(material)
    bpy.data.objects.remove(template)

    for frame in spec["frames"]:
        atoms = []
        for position, radius, colour in zip(frame["positions"], frame["radii"], frame["colours"]):
            atom = bpy.data.objects.new("atom", sphere)
            atom.location = position
            atom.scale = (radius, radius, radius)
            atom.color = (*(_linear(c) for c in colour), 1.0)
            scene.collection.objects.link(atom)
            atoms.append(atom)
        scene.render.filepath = frame["output"]
        bpy.ops.render.render(write_still=True)
        for atom in atoms:
            bpy.data.objects.remove(atom)


def _linear(srgb: float) -> float:
    """The scene file holds sRGB colours as pictures show them; Blender shades in linear light."""
    return srgb / 12.92 if srgb <= 0.04045 else ((srgb + 0.055) / 1.055) ** 2.4


main()
